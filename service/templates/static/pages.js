// Progressive "show more": a link whose page is fetched and put in place of the link.
// Without this script (or when a fetch fails) the link is a plain link to that page.
document.addEventListener("click", async (event) => {
  const link = event.target.closest("a[data-more]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey ||
      event.ctrlKey || event.shiftKey || event.altKey) return;
  event.preventDefault();
  const slot = link.closest("li");
  if (slot.dataset.loading) return;
  slot.dataset.loading = "1";
  link.setAttribute("aria-busy", "true");
  try {
    const response = await fetch(link.href, {credentials: "same-origin",
                                              headers: {"Accept": "text/html"}});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const items = page.getElementById("page-items");
    if (!items) throw new Error("no items");
    const nodes = Array.from(items.children).map((n) => document.adoptNode(n));
    for (const banner of page.querySelectorAll(".banner")) {
      const main = document.querySelector("main");
      main.insertBefore(document.adoptNode(banner), main.firstChild);
    }
    slot.replaceWith(...nodes);
    const first = nodes.find((n) => n.firstElementChild && n.firstElementChild.tagName === "ARTICLE");
    const live = document.getElementById("live");
    const count = nodes.filter((n) => !n.classList.contains("more")).length;
    if (live) live.textContent = "Loaded " + count + (count === 1 ? " post." : " posts.");
    if (first) {  // focusable by script only (not a tab stop): keyboard users go on from here
      const article = first.firstElementChild;
      article.setAttribute("tabindex", "-1");
      article.focus();
    } else if (nodes.length) { const a = nodes[0].querySelector("a"); if (a) a.focus(); }
  } catch (error) {
    window.location.assign(link.href);  // fall back to the page itself
  }
});
