"""The HTML pages in a real browser: Playwright driving Debian's Chromium (the Makefile's
test-deps installs it), against the real app and the session's embedded PostgreSQL.

Clicking every "show more" reaches exactly the replies the API's cursors reach; the pages
work without JavaScript (plain links); a database outage shows the degraded banner; hostile
text stays inert; the page fits a 375px phone; everything is reachable by keyboard; axe-core
finds no serious or critical violation.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import async_playwright

from storage import account_writes, label_writes, seeding

from service.app import create_app
from service.resilience.faults import Faults

from .conftest import PROXIED_APP_SETTINGS
from .helpers import collect_all_replies, iter_nodes
from .test_pages import HOSTILE

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "conversation-page.png"


@pytest.fixture(scope="session")
async def browser():
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is missing: `make test` installs it (test-deps)"
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=executable)
        yield b
        await b.close()


@pytest.fixture(scope="module")
async def demo(db):
    async with db.pool.acquire() as con:
        report = await seeding.seed(con, "demo")
    return {name: int(i) for name, i in report["roots"].items()}


@pytest.fixture
async def site(aiohttp_client, settings):
    """A real server of the app on the test's loop (the browser reaches it over TCP)."""
    async def make(faults: Faults | None = None, **overrides):
        client = await aiohttp_client(create_app(settings.replace(**overrides), faults=faults),
                                      timeout=aiohttp.ClientTimeout(total=20))
        client.base = str(client.make_url("")).rstrip("/")
        return client
    return make


@pytest.fixture
async def page(browser):
    context = await browser.new_context()
    p = await context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    p.on("dialog", lambda d: errors.append("dialog: " + d.message))
    p.errors = errors
    yield p
    await context.close()
    assert not errors, errors


async def assert_accessible(page) -> None:
    results = await Axe().run(page)
    bad = [(v["id"], v["impact"], v["help"], [n["html"][:120] for n in v["nodes"][:3]])
           for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], bad


async def dom_ids(page) -> list[str]:
    return await page.eval_on_selector_all("article[id^=p]", "els => els.map(e => e.id.slice(1))")


async def click_every_show_more(page, limit: int = 2000) -> int:
    """Click "show more" links (loaded in place by the page's script) until none is left."""
    clicks = 0
    while True:
        links = page.locator("li.more a[data-more]")
        if await links.count() == 0:
            return clicks
        clicks += 1
        assert clicks <= limit, "show more never ends"
        await click_and_wait(page, links.first)


async def click_and_wait(page, link) -> None:
    """Click a "show more" link and wait until the page's script has put its page in place."""
    handle = await link.element_handle()
    await handle.click()
    await page.wait_for_function("el => !el.isConnected", arg=handle, timeout=10_000)


async def api_reachable(client, focal: int, params: dict) -> list[str]:
    first = await (await client.get(f"/v1/conversations/{focal}", params=params)).json()
    return await collect_all_replies(client, focal, first)


def ancestors_of(view: dict) -> list[str]:
    return [n["id"] for n in view["ancestors"]["items"]]


async def rich_conversation(world):
    """Replies in every section, tombstones, quotes in every state, a deep branch."""
    host, other, gone_author = await world.account(), await world.account(), await world.account()
    quoted_ok = await world.post(other, "a post worth quoting")
    quoted_deleted = await world.post(other, "quoted, then deleted")
    quoted_unavailable = await world.post(gone_author, "quoted, then its author was suspended")
    root = await world.post(host, "A rich conversation", quote=quoted_ok)
    normal = await world.fan(other, root, 7)
    await world.post(other, "quotes a deleted post", reply_to=root, quote=quoted_deleted)
    await world.post(other, "quotes an unavailable one", reply_to=root, quote=quoted_unavailable)
    await world.delete(quoted_deleted)
    await account_writes.update_account(world.db, gone_author, state="suspended")
    deep = normal[0]
    for level in range(9):
        deep = await world.post(other, f"deep {level}", reply_to=deep)
    for i in range(4):
        spam = await world.post(other, f"spammy {i}", reply_to=root)
        await label_writes.upsert_label(world.db, spam, "spam", 0.99)
    for i in range(3):
        bad = await world.post(other, f"rude {i}", reply_to=root)
        await label_writes.upsert_label(world.db, bad, "abusive", 0.99)
    holder = await world.post(other, "this one is deleted", reply_to=normal[1])
    await world.post(host, "a reply under a deleted post", reply_to=holder)
    await world.delete(holder)
    await world.fan(other, normal[2], 12)
    return root


async def test_home_lists_the_demos_and_opens_one(site, page, demo):
    client = await site()
    await page.goto(client.base + "/")
    assert await page.locator("a[href='/openapi.json']").count() >= 1
    assert await page.locator("a[href='/readyz']").count() >= 1
    await assert_accessible(page)
    await page.get_by_role("link", name="Welcome", exact=True).click()
    await page.wait_for_url(f"**/conversations/{demo['welcome']}")
    assert "Welcome to Arbor" in await page.locator("article.focal").inner_text()
    await assert_accessible(page)


@pytest.mark.parametrize("name,params", [("quoted", {"branching": 4, "max_nodes": 30}),
                                         ("with_tombstone", {"branching": 1, "depth": 1}),
                                         ("topic_7", {})])
async def test_clicking_show_more_reaches_every_demo_reply(site, page, demo, name, params):
    client = await site()
    focal = demo[name]
    expected = await api_reachable(client, focal, params)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    await page.goto(f"{client.base}/conversations/{focal}" + (f"?{query}" if query else ""))
    await click_every_show_more(page)
    seen = await dom_ids(page)
    assert len(seen) == len(set(seen)), "a post shown twice"
    assert set(seen) - {str(focal)} == set(expected)
    await assert_accessible(page)


async def test_every_section_tombstone_and_quote_state_by_clicking(site, page, world):
    client = await site()
    root = await rich_conversation(world)
    params = {"branching": 3, "depth": 3}
    expected = await api_reachable(client, root, params)
    await page.goto(f"{client.base}/conversations/{root}?branching=3&depth=3")
    text = await page.locator("main").inner_text()
    assert "Show more replies (up to 4)" in text
    assert ("Show additional replies, including those that may contain offensive content "
            "(up to 3)") in text
    assert "The quoted post was deleted." in text
    assert "The quoted post is unavailable." in text
    assert "a post worth quoting" in await page.locator("article.focal blockquote").inner_text()
    await assert_accessible(page)
    clicks = await click_every_show_more(page)
    assert clicks >= 4
    seen = await dom_ids(page)
    assert len(seen) == len(set(seen))
    assert set(seen) - {str(root)} == set(expected)
    text = await page.locator("main").inner_text()
    assert "This post was deleted." in text and "spammy 3" in text and "rude 2" in text


async def test_show_more_works_without_javascript(site, browser, world):
    client = await site()
    root = await rich_conversation(world)
    expected = await api_reachable(client, root, {"branching": 2, "depth": 2})
    context = await browser.new_context(java_script_enabled=False)
    page = await context.new_page()
    try:
        await page.goto(f"{client.base}/conversations/{root}?branching=2&depth=2")
        seen = await dom_ids(page)
        queue = await page.eval_on_selector_all("li.more a", "els => els.map(a => a.href)")
        visited = 0
        while queue:
            visited += 1
            assert visited < 500
            await page.goto(queue.pop(0))
            assert await page.locator("a", has_text="Back to the conversation").count() == 1
            seen += await dom_ids(page)
            queue += await page.eval_on_selector_all("li.more a", "els => els.map(a => a.href)")
        assert len(seen) == len(set(seen))
        assert set(seen) - {str(root)} == set(expected)
        # (axe needs scripts: the pages it checks are the other tests')
    finally:
        await context.close()


async def test_the_ancestors_gap_opens_in_place(site, page, demo):
    client = await site()
    leaf = demo["deep_chain_leaf"]
    view = await (await client.get(f"/v1/conversations/{leaf}", params={"ancestors": 5})).json()
    assert view["ancestors"]["omitted"] > 900
    await page.goto(f"{client.base}/conversations/{leaf}?ancestors=5")
    gap = page.locator("#ancestors li.more a")
    assert "more posts in between" in await gap.inner_text()
    for _ in range(3):  # three pages of the gap, each loaded in place under the root
        await click_and_wait(page, page.locator("#ancestors li.more a").first)
    ids = await page.eval_on_selector_all("#ancestors article", "e => e.map(a => a.id.slice(1))")
    assert ids[0] == str(demo["deep_chain_root"])
    assert ids[-4:] == ancestors_of(view)[-4:]  # the nearest stay nearest
    assert len(ids) == len(set(ids)) == 5 + 3 * 5


async def test_degraded_banner_while_the_database_is_down(aiohttp_client, settings, page, world,
                                                           fault_proxy, proxied_dsn):
    app = create_app(settings.replace(database_url=proxied_dsn, **PROXIED_APP_SETTINGS))
    client = await aiohttp_client(app, timeout=aiohttp.ClientTimeout(total=20))
    base = str(client.make_url("")).rstrip("/")
    a = await world.account()
    root = await world.post(a, "served stale when the database is down")
    await world.fan(a, root, 3)
    never = await world.post(a, "never rendered before the outage")
    await page.goto(f"{base}/conversations/{root}")
    assert await page.locator(".banner").count() == 0
    fault_proxy.refuse()  # the database goes down: no new connections, the open ones reset
    fault_proxy.reset_all()
    try:
        response = await page.goto(f"{base}/conversations/{root}")
        assert response.status == 200 and response.headers["arbor-degraded"] == "stale"
        banner = await page.locator(".banner").inner_text()
        assert "cannot reach its database" in banner and "saved copy" in banner
        assert await page.locator("article[id^=p]").count() == 4
        await assert_accessible(page)
        response = await page.goto(f"{base}/conversations/{never}")
        assert response.status == 503 and int(response.headers["retry-after"]) >= 1
        assert "unavailable right now" in await page.locator("h1").inner_text()
        response = await page.goto(base + "/")
        assert response.status == 200
    finally:
        fault_proxy.heal()
        await fault_proxy.wait_listening()


async def test_quotes_and_ranking_degraded_banners(site, page, world):
    a = await world.account()
    quoted = await world.post(a, "quoted")
    root = await world.post(a, "quotes are down", quote=quoted)
    await world.fan(a, root, 2)
    client = await site(faults=Faults(quote_hydration=ConnectionResetError("quotes down"),
                                      ranking=ConnectionResetError("ranking down")))
    await page.goto(f"{client.base}/conversations/{root}")
    banner = await page.locator(".banner").inner_text()
    assert "Quoted posts could not be loaded" in banner
    assert "Ranking is unavailable" in banner
    assert "could not be loaded right now" in await page.locator("article.focal").inner_text()
    await assert_accessible(page)


async def test_hostile_text_is_inert(site, page, world):
    client = await site()
    a = await world.account(handle="x\u202eevil")
    root = await world.post(a, HOSTILE[0])
    for text in HOSTILE[1:]:
        await world.post(a, text, reply_to=root)
    await page.set_viewport_size({"width": 375, "height": 800})
    await page.goto(f"{client.base}/conversations/{root}")
    for text in HOSTILE:
        await page.mouse.move(10, 10)
    await page.hover("article.focal")
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert await page.locator("main img, main b, main script").count() == 0
    texts = await page.eval_on_selector_all("p.t", "els => els.map(e => e.textContent)")
    assert set(HOSTILE) <= set(texts)  # shown as written, every character
    # right-to-left overrides stay inside their own isolated element
    isolated = await page.eval_on_selector_all(
        "p.t", "els => els.map(e => getComputedStyle(e).unicodeBidi)")
    assert set(isolated) == {"isolate"}
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    await assert_accessible(page)


async def test_phone_width_has_no_horizontal_scroll(site, page, demo):
    client = await site()
    await page.set_viewport_size({"width": 375, "height": 740})
    for name in ("welcome", "quoted", "deep_chain_middle"):
        await page.goto(f"{client.base}/conversations/{demo[name]}")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (name, width)
        size = await page.evaluate(
            "parseFloat(getComputedStyle(document.querySelector('p.t')).fontSize)")
        assert size >= 16
    await assert_accessible(page)


async def test_keyboard_reaches_show_more_and_the_new_replies(site, page, demo):
    client = await site()
    await page.goto(f"{client.base}/conversations/{demo['quoted']}?branching=2&depth=2")
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.className") == "skip"
    await page.keyboard.press("Enter")
    assert await page.evaluate("document.activeElement.id") == "main"
    for _ in range(300):
        await page.keyboard.press("Tab")
        if await page.evaluate("document.activeElement.hasAttribute('data-more')"):
            break
    else:
        raise AssertionError("no show-more link reachable by Tab")
    before = len(await dom_ids(page))
    await page.keyboard.press("Enter")
    # a function, not an expression: the page's CSP forbids eval, which an expression needs
    await page.wait_for_function("n => document.querySelectorAll('article[id^=p]').length > n",
                                 arg=before)
    focused = await page.evaluate("document.activeElement.tagName + ' ' + "
                                  "(document.activeElement.id || '')")
    assert focused.startswith("ARTICLE ")
    assert "Loaded" in await page.locator("#live").inner_text()


async def test_sign_in_through_the_form_applies_the_viewer_rules(site, page, world):
    client = await site()
    viewer, blocked = await world.account(), await world.account()
    host = await world.account()
    root = await world.post(host, "signed-in view")
    hidden = await world.post(blocked, "you blocked me", reply_to=root)
    await world.relate("blocks", viewer, blocked)
    await page.goto(f"{client.base}/conversations/{root}")
    assert str(hidden) in await dom_ids(page)
    await page.get_by_role("link", name="Sign in").click()
    await assert_accessible(page)
    await page.get_by_label("Account token").fill(await world.token(viewer))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"**/conversations/{root}")
    assert str(hidden) not in await dom_ids(page)
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "arbor-session")
    assert session["httpOnly"] and session["sameSite"] == "Lax"
    assert await page.evaluate("document.cookie") == ""  # no script can read it
    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(client.base + "/")
    await page.goto(f"{client.base}/conversations/{root}")
    assert str(hidden) in await dom_ids(page)


async def test_screenshot_of_a_demo_conversation(site, page, demo, tmp_path):
    """The README's docs/conversation-page.png is made here, from the demo, when
    ARBOR_SCREENSHOT=1 (`make screenshot`); other runs write it to a temporary folder."""
    client = await site()
    await page.set_viewport_size({"width": 900, "height": 1100})
    await page.goto(f"{client.base}/conversations/{demo['quoted']}?branching=3&depth=3")
    target = SCREENSHOT if os.environ.get("ARBOR_SCREENSHOT") == "1" else tmp_path / "shot.png"
    target.parent.mkdir(exist_ok=True)
    await page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
