"""Venue configuration: TOML -> frozen attrs classes, validated with key paths.

A bad config never starts the daemon: every problem is reported with the dotted
key that holds it (``markets.SOL_USDC.tick_size: ...``). Unknown keys are errors,
so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any, Final

import attrs
import cattrs
import orjson
import tomli_w

from engine.host import CPU_LATENCY_DEFAULT, CPU_LATENCY_MAX_US
from engine.units import DecimalError, parse_units, ratio, scale_of

MARKET_STATES: Final = ("Open", "Closed", "CancelOnly", "LimitOnly", "PostOnly")
PINNED_SECTIONS: Final = ("venue", "assets", "markets", "plugins")


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the problem."""


@attrs.frozen
class AssetConfig:
    decimals: int
    display_name: str


@attrs.frozen
class MarketConfig:
    base: str
    quote: str
    tick_size: str
    step_size: str
    min_quantity: str
    min_notional: str
    price_band_min_multiplier: str = "0.75"
    price_band_max_multiplier: str = "1.25"
    maker_fee_bps: int = 2
    taker_fee_bps: int = 5
    state: str = "Open"


@attrs.frozen
class JournalConfig:
    dir: str = "./var"
    segment_bytes: int = 64 * 1024 * 1024
    # Ed25519 venue key; "" means <dir>/venue.key, generated (0600) on first start.
    signing_key: str = ""
    checkpoint_every_records: int = 1000
    checkpoint_every_s: int = 60
    snapshot_every_events: int = 1_000_000


@attrs.frozen
class LimitsConfig:
    # open orders plus orders in flight, over all markets: a new order beyond it is refused
    max_open_orders_per_account: int = 1000


@attrs.frozen
class AdminConfig:
    # Empty means "<journal.dir>/admin.sock".
    socket: str = ""


@attrs.frozen
class HostConfig:
    # The most CPU wake-up latency (us) the daemon accepts while it runs, held through Linux PM QoS
    # (engine/host.py): 0 = idle CPUs poll instead of halting; -1 = the kernel's idle states.
    cpu_latency_us: int = CPU_LATENCY_DEFAULT


@attrs.frozen
class ListenConfig:
    listen: str
    # PEM files: both set, the adapter serves TLS (https, wss); both empty, plaintext (adapters/tls.py)
    tls_cert: str = ""
    tls_key: str = ""


FIX_APPLICATIONS: Final = ("exchange", "echo")
# A FIX session's inbound application messages (adapters/fix/throttle.py). Binance's Spot FIX order-entry
# sessions allow 10,000 messages every 10 s per connection, 1,000 a second (github.com/binance/
# binance-spot-api-docs, fix-api.md, "Message Limits"); Coinbase Exchange's token buckets burst to twice their
# rate (private REST: 15 a second, bursts of 30); its FIX 5 sessions get 100 requests a second and are
# disconnected past 200 messages a second (docs.cdp.coinbase.com/exchange/introduction/rate-limits-overview).
FIX_MAX_MESSAGES_PER_S: Final = 1_000
FIX_BURST_MESSAGES: Final = 2_000


@attrs.frozen
class FixSessionConfig:
    """One FIX session: the peer's CompID (SenderCompID it sends) and the account it trades for."""

    sender_comp_id: str  # the venue's CompID in this session
    target_comp_id: str  # the client's CompID
    account: int
    heartbeat_min_s: int = 5
    heartbeat_max_s: int = 60
    reset_on_logon: bool = False
    require_signature: bool = True  # Binance-style Ed25519 Logon (Username 553 + RawData 96)
    drop_copy: bool = False  # receives a copy of every execution report of the account; cannot trade
    cancel_on_disconnect: bool = False
    max_messages_per_s: int = FIX_MAX_MESSAGES_PER_S  # application messages from the client; over it: refused
    burst_messages: int = FIX_BURST_MESSAGES  # how many of them may come at once


@attrs.frozen
class FixConfig:
    listen: str = "127.0.0.1:8402"
    tls_cert: str = ""  # as ListenConfig: FIX over TLS when both are set
    tls_key: str = ""
    application: str = "exchange"  # "echo" only runs the QuickFIX acceptance suite
    sessions: tuple[FixSessionConfig, ...] = ()


@attrs.frozen
class AdaptersConfig:
    rest: ListenConfig = ListenConfig("127.0.0.1:8400")
    websocket: ListenConfig = ListenConfig("127.0.0.1:8401")
    fix: FixConfig = FixConfig()


@attrs.frozen
class PluginsConfig:
    enabled: tuple[str, ...] = ()


@attrs.frozen
class VenueConfig:
    name: str = "satchel"


@attrs.frozen
class Config:
    assets: dict[str, AssetConfig]
    markets: dict[str, MarketConfig]
    venue: VenueConfig = VenueConfig()
    journal: JournalConfig = JournalConfig()
    limits: LimitsConfig = LimitsConfig()
    admin: AdminConfig = AdminConfig()
    host: HostConfig = HostConfig()
    adapters: AdaptersConfig = AdaptersConfig()
    plugins: PluginsConfig = PluginsConfig()

    def journal_dir(self, base: Path | None = None) -> Path:
        path = Path(self.journal.dir)
        return path if path.is_absolute() or base is None else base / path

    def fingerprint(self) -> str:
        """Stable hash of what defines the venue's history, pinned by the journal's genesis record.

        Assets, markets, the venue's name and the plugin set change what replay
        means; journal tuning, the admin socket and adapter addresses do not, so an
        operator may change those without a new journal.
        """
        venue = {k: v for k, v in _converter.unstructure(self).items() if k in PINNED_SECTIONS}
        return hashlib.blake2b(orjson.dumps(venue, option=orjson.OPT_SORT_KEYS), digest_size=32).hexdigest()


_converter = cattrs.Converter(forbid_extra_keys=True)


def _strict(kind: type) -> Any:
    """A structure hook that accepts exactly ``kind`` (cattrs would coerce 2.7 to 2, "9" to 9)."""

    def check(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__} {value!r}")
        return value

    return check


def _names(value: Any, _: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or any(type(v) is not str for v in value):
        raise TypeError(f"expected a list of strings, got {value!r}")
    return tuple(value)


for _kind in (int, str, bool):
    _converter.register_structure_hook(_kind, _strict(_kind))
_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _names)


def _fix_sessions(value: Any, _: Any) -> tuple[FixSessionConfig, ...]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list of session tables, got {value!r}")
    sessions = []
    for i, item in enumerate(value):
        try:
            sessions.append(_converter.structure(item, FixSessionConfig))
        except cattrs.BaseValidationError as exc:  # this hook is not told its path: name the session here
            raise _Located(_problems(exc, f"adapters.fix.sessions[{i}]")) from None
    return tuple(sessions)


_converter.register_structure_hook_func(lambda t: t == tuple[FixSessionConfig, ...], _fix_sessions)


def pinned_differences(journal: Any, config: dict[str, Any]) -> list[str]:
    """``key: journal value -> config value`` for each pinned setting (``Config.fingerprint``) that differs
    between the config a journal's genesis recorded and ``config`` (both unstructured)."""
    journal = journal if isinstance(journal, dict) else {}
    out: list[str] = []

    def walk(old: Any, new: Any, key: str) -> None:
        if isinstance(old, dict) and isinstance(new, dict):
            for name in sorted(old.keys() | new.keys()):
                walk(old.get(name, _ABSENT), new.get(name, _ABSENT), f"{key}.{name}" if key else name)
        elif old != new:
            out.append(f"{key}: {_shown(old)} in the journal, {_shown(new)} in the config")

    for section in sorted(PINNED_SECTIONS):
        walk(journal.get(section, _ABSENT), config.get(section, _ABSENT), section)
    return out


_ABSENT: Final = object()


def _shown(value: Any) -> str:
    return "absent" if value is _ABSENT else orjson.dumps(value).decode()


def parse_config(data: dict[str, Any]) -> Config:
    """Structure and validate a TOML document; raises ConfigError naming the key."""
    try:
        config = _converter.structure(data, Config)
    except cattrs.BaseValidationError as exc:
        raise ConfigError(_problems(exc, "")) from None
    _validate(config)
    return config


def _problems(exc: cattrs.BaseValidationError, path: str) -> str:
    """cattrs' errors as ``key: problem``, the form of every other config error (``assets.USDC.decimals: ...``)."""
    out = []
    for problem in cattrs.transform_error(exc, path=path, format_exception=_problem):
        text, _, where = problem.rpartition(" @ ")
        if text.startswith(_LOCATED):
            out.append(text.removeprefix(_LOCATED))
            continue
        key = re.sub(r"\['([^']*)'\]", r".\1", where).lstrip(".")
        out.append(f"{key}: {text}" if key else text)
    return "; ".join(out)


class _Located(ValueError):
    """Problems already written as ``key: problem`` by a hook that knows the key."""


_LOCATED: Final = "\x00"  # marks a _Located message in cattrs' output: printed as it is, without cattrs' path


def _problem(exc: BaseException, kind: Any) -> str:
    if isinstance(exc, _Located):
        return _LOCATED + str(exc)
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''} {', '.join(sorted(exc.extra_fields))}"
    if isinstance(exc, KeyError):
        return "required key missing"
    if isinstance(exc, TypeError | ValueError) and str(exc).startswith("expected "):
        return str(exc)  # this module's own checks (``_strict``, ``_names``) say what they got
    if kind is not None and attrs.has(kind):
        return "expected a table"
    return cattrs.v.format_exception(exc, kind)


def load_config(path: str | Path) -> Config:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return with_tls_paths(parse_config(data), Path(path).resolve().parent)


def with_tls_paths(config: Config, base: Path) -> Config:
    """``config`` with each adapter's relative tls_cert/tls_key made absolute from ``base`` (the config
    file's directory, where the journal directory's relative path starts too)."""

    def resolved(section: Any) -> Any:
        def absolute(value: str) -> str:
            return str(base / value) if value and not Path(value).is_absolute() else value

        return attrs.evolve(section, tls_cert=absolute(section.tls_cert), tls_key=absolute(section.tls_key))

    adapters = config.adapters
    return attrs.evolve(config, adapters=attrs.evolve(
        adapters, rest=resolved(adapters.rest), websocket=resolved(adapters.websocket), fix=resolved(adapters.fix)))


def _validate(config: Config) -> None:
    if not config.assets:
        raise ConfigError("assets: at least one asset is required")
    for symbol, asset in config.assets.items():
        if not symbol.isalnum() or not symbol.isupper():
            raise ConfigError(f"assets.{symbol}: asset symbols are upper-case letters and digits")
        if not 0 <= asset.decimals <= 12:
            raise ConfigError(f"assets.{symbol}.decimals: must be between 0 and 12, got {asset.decimals}")
    for symbol, market in config.markets.items():
        from engine.spec import MarketSpec  # spec depends on config types

        MarketSpec.build(symbol, market, config.assets, config.limits.max_open_orders_per_account)
    if config.journal.segment_bytes < 4096:
        raise ConfigError("journal.segment_bytes: must be at least 4096")
    for key in ("checkpoint_every_records", "checkpoint_every_s", "snapshot_every_events"):
        if getattr(config.journal, key) < 1:
            raise ConfigError(f"journal.{key}: must be at least 1")
    if config.limits.max_open_orders_per_account < 1:
        raise ConfigError("limits.max_open_orders_per_account: must be at least 1")
    latency = config.host.cpu_latency_us
    if latency != CPU_LATENCY_DEFAULT and not 0 <= latency <= CPU_LATENCY_MAX_US:
        raise ConfigError(f"host.cpu_latency_us: must be -1 (the kernel's idle states) or 0..{CPU_LATENCY_MAX_US} "
                          f"microseconds, got {latency}")
    for name in ("rest", "websocket", "fix"):
        listen = getattr(config.adapters, name).listen
        host, _, port = listen.rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"adapters.{name}.listen: expected HOST:PORT, got {listen!r}")
        section = getattr(config.adapters, name)
        if bool(section.tls_cert) != bool(section.tls_key):
            raise ConfigError(f"adapters.{name}: tls_cert and tls_key go together (a PEM certificate chain and its "
                              "private key); set both for TLS, or neither for plaintext")
    _validate_fix(config.adapters.fix)


def split_listen(listen: str) -> tuple[str, int]:
    """An adapter's ``HOST:PORT`` (an IPv6 host in brackets, ``[::1]:8400``) as the host and port to bind."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def address_text(host: str, port: int) -> str:
    """A bound address as it is written in the config: ``127.0.0.1:8400``, ``[::1]:8400``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _validate_fix(fix: FixConfig) -> None:
    if fix.application not in FIX_APPLICATIONS:
        raise ConfigError(f"adapters.fix.application: must be one of {', '.join(FIX_APPLICATIONS)}, got {fix.application!r}")
    seen = set()
    for index, session in enumerate(fix.sessions):
        key = f"adapters.fix.sessions[{index}]"
        pair = (session.sender_comp_id, session.target_comp_id)
        if not session.sender_comp_id or not session.target_comp_id:
            raise ConfigError(f"{key}: sender_comp_id and target_comp_id must not be empty")
        if pair in seen:
            raise ConfigError(f"{key}: duplicate session {pair[0]} -> {pair[1]}")
        seen.add(pair)
        if session.account < 1:
            raise ConfigError(f"{key}.account: must be a trading account id (>= 1)")
        if not 1 <= session.heartbeat_min_s <= session.heartbeat_max_s <= 3600:
            raise ConfigError(f"{key}: need 1 <= heartbeat_min_s <= heartbeat_max_s <= 3600")
        for name in ("max_messages_per_s", "burst_messages"):  # no off switch: a trusted peer gets a high limit
            if getattr(session, name) < 1:
                raise ConfigError(f"{key}.{name}: must be at least 1, got {getattr(session, name)}")


# Config values are typed by people: whitespace around a number is forgiven here (the parser itself is strict).


def check_decimal(key: str, text: str, scale: int) -> int:
    try:
        return parse_units(text.strip(), scale, what=key)
    except DecimalError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_ratio(key: str, text: str) -> tuple[int, int]:
    try:
        return ratio(text.strip(), what=key)
    except DecimalError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def check_scale(key: str, text: str) -> int:
    try:
        return scale_of(text.strip(), what=key)
    except DecimalError as exc:
        raise ConfigError(f"{key}: {exc}") from None


# ---------------------------------------------------------------------------
# The embedded default venue, written by `satchel init` and shipped as config.toml.

# The venue's own settings; every other one is its class's default.
_DEFAULT_VENUE: Final = Config(
    venue=VenueConfig("satchel-local"),
    host=HostConfig(cpu_latency_us=0),  # a venue runs latency-tuned; where the machine refuses, it says so and runs on
    assets={
        "USDC": AssetConfig(decimals=6, display_name="USD Coin"),
        "SOL": AssetConfig(decimals=9, display_name="Solana"),
        "BTC": AssetConfig(decimals=8, display_name="Bitcoin"),
        "ETH": AssetConfig(decimals=8, display_name="Ethereum"),
    },
    markets={
        "SOL_USDC": MarketConfig(base="SOL", quote="USDC", tick_size="0.01", step_size="0.01",
                                 min_quantity="0.01", min_notional="1"),
        "BTC_USDC": MarketConfig(base="BTC", quote="USDC", tick_size="0.1", step_size="0.00001",
                                 min_quantity="0.00001", min_notional="1"),
        "ETH_USDC": MarketConfig(base="ETH", quote="USDC", tick_size="0.01", step_size="0.0001",
                                 min_quantity="0.0001", min_notional="1"),
    },
)


_COMMENTS: Final[dict[str, str]] = {
    "venue": "The venue's name, pinned in the journal's first record.",
    "journal": (
        "Where the append-only journal lives. Everything the venue knows is rebuilt from it.\n"
        '# signing_key: the venue\'s Ed25519 key file ("" = <dir>/venue.key, created 0600 on first start).\n'
        "# A signed checkpoint is written every checkpoint_every_records records or checkpoint_every_s\n"
        "# seconds (when anything changed), on every snapshot and at shutdown; a snapshot every\n"
        "# snapshot_every_events events."
    ),
    "limits": (
        "What one account may hold. max_open_orders_per_account counts its open orders and the orders\n"
        "# it has in flight, over all markets (each sub-account has its own); a new order beyond it is\n"
        "# refused. Not pinned in the journal: it never changes what happened, only what is accepted."
    ),
    "admin": 'Operator socket; "" means <journal.dir>/admin.sock (owner-only, token-authenticated).',
    "host": (
        "What the daemon asks of the machine while it runs. cpu_latency_us: the most wake-up latency\n"
        "# an idle CPU may add, held through Linux PM QoS (/dev/cpu_dma_latency, needs root or write\n"
        "# access to it; refused, the daemon logs a warning and runs on). 0 = idle CPUs poll instead of\n"
        "# halting: ~100 us off each order's round trip on a VM, for a core's power per idle CPU.\n"
        "# -1 = leave the idle states to the kernel."
    ),
    "assets": "Assets: `decimals` is the ledger's atomic unit (amounts are integers of 10^-decimals).",
    "markets": (
        "Spot markets. tick_size/step_size/min_quantity/min_notional are decimal strings;\n"
        "# price_band_*_multiplier bound limit prices around the active price (median of\n"
        "# best bid, best ask, last trade); fees are in basis points of the received asset;\n"
        "# state is one of Open, Closed, CancelOnly, LimitOnly, PostOnly."
    ),
    "adapters": (
        "Listen addresses for the protocol adapters (REST, WebSocket, FIX 4.4).\n"
        "# FIX: application is \"exchange\" (or \"echo\" for the QuickFIX acceptance suite); the\n"
        "# acceptor starts when sessions are configured. Add one [[adapters.fix.sessions]] table per\n"
        "# session: sender_comp_id (the venue's), target_comp_id (the client's), account, and optional\n"
        "# heartbeat_min_s/heartbeat_max_s, reset_on_logon, require_signature, drop_copy, cancel_on_disconnect,\n"
        f"# max_messages_per_s (default {FIX_MAX_MESSAGES_PER_S}) and burst_messages (default {FIX_BURST_MESSAGES}):\n"
        "# application messages beyond that rate are refused; far beyond it the session is logged out.\n"
        "# tls_cert/tls_key (each adapter): PEM files of the certificate chain and its private key; set\n"
        "# both to serve TLS 1.2+ (https, wss, FIX over TLS), leave both empty for plaintext."
    ),
    "plugins": "Jurisdiction plugins to enable, by name.",
}


def _default_document() -> dict[str, Any]:
    """``_DEFAULT_VENUE`` as a TOML document, its sections in the order ``_COMMENTS`` lists them."""
    tables = _converter.unstructure(_DEFAULT_VENUE)
    # no `sessions = []`: an operator adds [[adapters.fix.sessions]] tables, which could not follow it
    del tables["adapters"]["fix"]["sessions"]
    return {section: tables[section] for section in _COMMENTS}


DEFAULT: Final[dict[str, Any]] = _default_document()


def render_default() -> str:
    """The default config as commented TOML text."""
    parts = ["# Satchel venue configuration (generated by `satchel init`).\n"]
    for section, body in DEFAULT.items():
        parts.append(f"\n# {_COMMENTS[section]}\n")
        parts.append(tomli_w.dumps({section: body}))
    return "".join(parts)
