"""Who a client is (service/core/clients.py): accounts, addresses, trusted proxies."""
from __future__ import annotations

import pytest

from service.core.clients import address_key, client, client_address, parse_networks
from service.core.settings import SettingsError, load_settings

TRUSTED = parse_networks("10.0.0.0/8, 2001:db8:ffff::1")


def test_peer_is_the_client_without_trusted_proxies():
    assert client_address("203.0.113.5", [], ["198.51.100.1"], ()) == "203.0.113.5"


def test_an_untrusted_peer_cannot_name_its_client():
    assert client_address("203.0.113.5", ["for=198.51.100.1"], ["198.51.100.1"],
                          TRUSTED) == "203.0.113.5"


def test_x_forwarded_for_read_right_to_left_skipping_trusted_hops():
    # client -> proxy 10.0.0.2 -> proxy 10.0.0.1 -> us; a spoofed hop on the left is ignored
    xff = ["6.6.6.6, 198.51.100.7", "10.0.0.2"]
    assert client_address("10.0.0.1", [], xff, TRUSTED) == "198.51.100.7"


def test_forwarded_header_wins_and_is_parsed():
    fwd = ['for=6.6.6.6, for="[2001:db8::9]:4711";proto=https', "for=10.0.0.3:80"]
    assert client_address("10.0.0.1", fwd, ["1.1.1.1"], TRUSTED) == "2001:db8::9"


def test_garbage_where_a_proxy_should_write_stops_at_the_proxy():
    assert client_address("10.0.0.1", [], ["198.51.100.7, unknown"], TRUSTED) == "10.0.0.1"


def test_all_hops_trusted_gives_the_leftmost():
    assert client_address("10.0.0.1", [], ["10.0.0.9, 10.0.0.8"], TRUSTED) == "10.0.0.9"


def test_ipv6_grouped_by_64_and_mapped_ipv4_unwrapped():
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") == "ip:2001:db8:1:2::/64"
    assert address_key("::ffff:198.51.100.7") == "ip:198.51.100.7"
    assert address_key("198.51.100.7") == "ip:198.51.100.7"


def test_account_key_when_known():
    assert client("198.51.100.7", 42).key == "a:42"
    assert client("198.51.100.7", None).key == "ip:198.51.100.7"
    # an unresolved token: the address's budget for such requests, whatever the token
    assert client("198.51.100.7", None, token=True).key == "ip:198.51.100.7#token"
    assert client("2001:db8::1", None, token=True).key == "ip:2001:db8::/64#token"


def test_trusted_proxies_setting_is_validated():
    with pytest.raises(SettingsError, match="not an IP address"):
        load_settings(env={}, overrides={"trusted_proxies": "10.0.0.0/8, nonsense"})
    assert load_settings(env={}, overrides={"trusted_proxies": "10.0.0.0/8"}).trusted_proxies


async def test_client_of_request_uses_the_viewer_cache(client, world):
    """Through the app: an anonymous request is its address; a token, once resolved, its
    account."""
    from service.http.keys import VIEWERS
    from service.http.auth import client_of
    from aiohttp.test_utils import make_mocked_request

    app = client.server.app
    account = await world.account("client_key_user")
    token = await world.token(account)
    headers = {"Authorization": f"Bearer {token}"}
    assert client_of(make_mocked_request("GET", "/", headers=headers, app=app)).key \
        == "ip:-#token"  # a mocked request has no peer
    assert client_of(make_mocked_request("GET", "/", app=app)).key == "ip:-"
    assert (await client.get("/v1/me/follows", headers=headers)).status == 200
    got = client_of(make_mocked_request("GET", "/", headers=headers, app=app))
    assert got.key == f"a:{account}" and got.account_id == account
    # the key outlives the viewer cache's short TTL (it only says whom to charge)
    app[VIEWERS].tokens.clear()
    assert client_of(make_mocked_request("GET", "/", headers=headers, app=app)).key \
        == f"a:{account}"
