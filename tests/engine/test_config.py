"""Venue config: parsing, the shipped defaults, and errors that name their key (engine/config.py)."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from engine.config import DEFAULT, Config, ConfigError, load_config, parse_config, render_default
from engine.spec import MarketSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
SESSION = {"sender_comp_id": "A", "target_comp_id": "B", "account": 1}


def patched(path: str, value: Any) -> dict[str, Any]:
    """A deep copy of DEFAULT with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(DEFAULT)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def test_default_config_parses_to_the_documented_markets() -> None:
    config = parse_config(DEFAULT)
    assert config.venue.name == "satchel-local"
    assert sorted(config.assets) == ["BTC", "ETH", "SOL", "USDC"]
    assert sorted(config.markets) == ["BTC_USDC", "ETH_USDC", "SOL_USDC"]
    sol = MarketSpec.build("SOL_USDC", config.markets["SOL_USDC"], config.assets, 1000)
    assert (sol.base, sol.quote, sol.base_decimals, sol.quote_decimals) == ("SOL", "USDC", 9, 6)
    assert sol.format_tick() == "0.01" and sol.format_step() == "0.01"
    assert sol.base_per_step == 10_000_000  # 0.01 SOL in 1e-9 atoms
    assert sol.quote_per_tick_step == 100  # 0.01 USDC x 0.01 = 0.0001 USDC
    assert (sol.maker_fee_bps, sol.taker_fee_bps) == (2, 5)
    assert sol.band_min == (75, 100) and sol.band_max == (125, 100)
    btc = MarketSpec.build("BTC_USDC", config.markets["BTC_USDC"], config.assets, 1000)
    assert btc.base_per_step == 1_000  # 0.00001 BTC in 1e-8 atoms
    assert btc.quote_per_tick_step == 1  # 0.1 x 0.00001 = 0.000001 USDC, one atom
    assert config.adapters.rest.listen == "127.0.0.1:8400"
    assert config.plugins.enabled == ()


def test_shipped_config_toml_equals_the_embedded_default() -> None:
    shipped = load_config(REPO_ROOT / "config.toml")
    assert shipped == parse_config(DEFAULT)
    assert shipped.fingerprint() == parse_config(DEFAULT).fingerprint()


def test_render_default_round_trips_through_tomllib() -> None:
    text = render_default()
    assert text.startswith("# Satchel venue configuration")
    assert "# state is one of Open, Closed, CancelOnly, LimitOnly, PostOnly." in text
    assert tomllib.loads(text) == DEFAULT
    assert parse_config(tomllib.loads(text)) == parse_config(DEFAULT)


def test_omitted_optional_sections_take_defaults() -> None:
    minimal = {"assets": copy.deepcopy(DEFAULT["assets"]), "markets": {}}
    config = parse_config(minimal)
    assert config.venue.name == "satchel"
    assert config.journal.segment_bytes == 64 * 1024 * 1024
    assert config.adapters.fix.listen == "127.0.0.1:8402"


def test_fix_sessions_default_to_the_documented_rate_limit() -> None:
    """1,000 application messages a second, bursts of 2,000 (Binance's 10,000 per 10 s; see engine/config.py)."""
    config = parse_config(patched("adapters.fix.sessions", [SESSION, {**SESSION, "target_comp_id": "C",
                                                                       "max_messages_per_s": 50, "burst_messages": 7}]))
    default, chosen = config.adapters.fix.sessions
    assert (default.max_messages_per_s, default.burst_messages) == (1000, 2000)
    assert (chosen.max_messages_per_s, chosen.burst_messages) == (50, 7)
    assert "# max_messages_per_s (default 1000) and burst_messages (default 2000):\n" in render_default()


def test_fingerprint_changes_with_any_setting() -> None:
    base = parse_config(DEFAULT).fingerprint()
    assert parse_config(patched("markets.SOL_USDC.taker_fee_bps", 6)).fingerprint() != base
    assert parse_config(patched("venue.name", "other")).fingerprint() != base


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("markets.SOL_USDC.tickk", "0.01", r"^markets\.SOL_USDC: unknown key tickk$"),
        ("bogus", {}, r"^unknown key bogus$"),
        ("assets.SOL.decimals", "nine", r"^assets\.SOL\.decimals: expected int, got str 'nine'$"),
        ("journal.segment_bytes", [1], r"^journal\.segment_bytes: expected int, got list \[1\]$"),
        ("markets.SOL_USDC.maker_fee_bps", "two", r"^markets\.SOL_USDC\.maker_fee_bps: expected int, got str 'two'$"),
        ("markets.SOL_USDC.base", ..., r"^markets\.SOL_USDC\.base: required key missing$"),
        ("journal", 5, r"^journal: expected a table$"),
        ("host.cpu_latency_us", "0", r"^host\.cpu_latency_us: expected int, got str '0'$"),
        ("host.idle", "poll", r"^host: unknown key idle$"),
        ("adapters.fix.sessions", [{"sender_comp_id": "A", "target_comp_id": "B", "account": 1},
                                   {"sender_comp_id": "A", "target_comp_id": "B", "account": "x", "zz": 1}],
         r"^adapters\.fix\.sessions\[1\]\.account: expected int, got str 'x'; adapters\.fix\.sessions\[1\]: unknown key zz$"),
        ("adapters.fix.sessions", [SESSION, {**SESSION, "target_comp_id": "C", "max_messages_per_s": "fast"}],
         r"^adapters\.fix\.sessions\[1\]\.max_messages_per_s: expected int, got str 'fast'$"),
        ("adapters.fix.sessions", [{**SESSION, "burst_messages": 2.5}],
         r"^adapters\.fix\.sessions\[0\]\.burst_messages: expected int, got float 2\.5$"),
    ],
)
def test_structural_errors_name_the_key(path: str, value: Any, message: str) -> None:
    """In the form of every other config error: ``key: problem``, the key as the TOML file spells it."""
    with pytest.raises(ConfigError, match=message):
        parse_config(patched(path, value))


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("markets.SOL_USDC.base", "DOGE", "markets.SOL_USDC.base: unknown asset 'DOGE'"),
        ("markets.SOL_USDC.quote", "EUR", "markets.SOL_USDC.quote: unknown asset 'EUR'"),
        ("markets.SOL_USDC.quote", "BTC", "markets.SOL_USDC: spot symbol must be BASE_QUOTE, i.e. SOL_BTC"),
        ("markets.SOL_USDC.quote", "SOL", "markets.SOL_USDC.quote: must differ from base (SOL)"),
        # 0.0001 x 0.01 = 0.000001 is fine; 0.0001 x 0.001 = 1e-7 is finer than USDC's 6 decimals
        ("markets.SOL_USDC.tick_size", "0.0001", None),
        ("markets.SOL_USDC.tick_size", "0.01x", "markets.SOL_USDC.tick_size: markets.SOL_USDC.tick_size is not a decimal"),
        ("markets.SOL_USDC.tick_size", "0", "markets.SOL_USDC: tick_size and step_size must be positive"),
        ("markets.SOL_USDC.step_size", "0.0000000001", "markets.SOL_USDC.step_size: finer than SOL's 9 decimals"),
        ("markets.SOL_USDC.min_quantity", "0.015", "markets.SOL_USDC.min_quantity: markets.SOL_USDC.min_quantity decimal too long"),
        ("markets.SOL_USDC.min_quantity", "0", "markets.SOL_USDC.min_quantity: must be a positive multiple of step_size"),
        ("markets.SOL_USDC.min_notional", "0.0000001", "markets.SOL_USDC.min_notional: markets.SOL_USDC.min_notional decimal too long"),
        ("markets.SOL_USDC.price_band_min_multiplier", "1.5", "markets.SOL_USDC: price_band_min_multiplier must not exceed"),
        ("markets.SOL_USDC.price_band_max_multiplier", "0", "markets.SOL_USDC: price_band_min_multiplier must not exceed"),
        ("markets.SOL_USDC.taker_fee_bps", 1001, "markets.SOL_USDC.taker_fee_bps: must be between 0 and 1000"),
        ("markets.SOL_USDC.maker_fee_bps", -1, "markets.SOL_USDC.maker_fee_bps: must be between 0 and 1000"),
        ("markets.SOL_USDC.state", "Paused", "markets.SOL_USDC.state: must be one of Open, Closed, CancelOnly, LimitOnly, PostOnly"),
        ("assets.sol", {"decimals": 9, "display_name": "x"}, "assets.sol: asset symbols are upper-case letters and digits"),
        ("assets.SOL.decimals", 13, "assets.SOL.decimals: must be between 0 and 12, got 13"),
        ("assets", {}, "assets: at least one asset is required"),
        ("journal.segment_bytes", 4095, "journal.segment_bytes: must be at least 4096"),
        ("host.cpu_latency_us", -2, "host.cpu_latency_us: must be -1 (the kernel's idle states) or 0..2000000000 "
                                    "microseconds, got -2"),
        ("host.cpu_latency_us", 2_000_000_001, "host.cpu_latency_us: must be -1"),
        ("adapters.rest.listen", "localhost", "adapters.rest.listen: expected HOST:PORT, got 'localhost'"),
        ("adapters.websocket.listen", "127.0.0.1:http", "adapters.websocket.listen: expected HOST:PORT"),
        ("adapters.fix.listen", "127.0.0.1:65536", "adapters.fix.listen: expected HOST:PORT, got '127.0.0.1:65536'"),
        ("adapters.fix.listen", ":8402", "adapters.fix.listen: expected HOST:PORT"),
        ("adapters.fix.sessions", [SESSION, {**SESSION, "target_comp_id": "C", "max_messages_per_s": 0}],
         "adapters.fix.sessions[1].max_messages_per_s: must be at least 1, got 0"),
        ("adapters.fix.sessions", [SESSION, {**SESSION, "target_comp_id": "C", "burst_messages": -5}],
         "adapters.fix.sessions[1].burst_messages: must be at least 1, got -5"),
    ],
)
def test_semantic_errors_name_the_key(path: str, value: Any, message: str | None) -> None:
    data = patched(path, value)
    if message is None:  # the tick-size case: valid alone, invalid with a finer step
        parse_config(data)
        data["markets"]["SOL_USDC"]["step_size"] = data["markets"]["SOL_USDC"]["min_quantity"] = "0.001"
        message = "markets.SOL_USDC: tick_size x step_size = 0.0001 x 0.001 is finer than USDC's 6 decimals"
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert str(info.value).startswith(message)


def test_config_decimals_forgive_whitespace_around_them() -> None:
    # units.parse_units is strict for the wire; a config value someone typed as " 0.01 " still loads
    data = patched("markets.SOL_USDC.tick_size", " 0.01 ")
    data["markets"]["SOL_USDC"]["min_notional"] = "1\n"
    data["markets"]["SOL_USDC"]["price_band_max_multiplier"] = "\t1.25"
    config = parse_config(data)
    assert MarketSpec.build("SOL_USDC", config.markets["SOL_USDC"], config.assets, 1000) == \
        MarketSpec.build("SOL_USDC", parse_config(DEFAULT).markets["SOL_USDC"], config.assets, 1000)


def test_load_config_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.toml"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[venue\nname = 1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_config(bad)


def test_load_config_reports_the_key_of_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "venue.toml"
    path.write_text(render_default().replace('state = "Open"', 'state = "Halted"', 1), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^markets\.SOL_USDC\.state: must be one of"):
        load_config(path)


def test_config_is_frozen() -> None:
    config: Config = parse_config(DEFAULT)
    with pytest.raises(AttributeError):
        config.venue = config.venue  # type: ignore[misc]


def test_fractional_fee_is_a_type_error() -> None:
    with pytest.raises(ConfigError, match="maker_fee_bps"):
        parse_config(patched("markets.SOL_USDC.maker_fee_bps", 2.7))


def test_plugins_enabled_must_be_a_list() -> None:
    with pytest.raises(ConfigError, match="plugins"):
        parse_config(patched("plugins.enabled", "eu"))
