"""Integer market specifications derived from config.

Prices travel inside the engine as ``price_ticks`` and quantities as
``qty_steps``. A market fixes two exact conversion factors:

* ``base_per_step``: base-asset atomic units in one quantity step;
* ``quote_per_tick_step``: quote-asset atomic units in (1 tick x 1 step).

So a fill of ``q`` steps at ``p`` ticks moves ``q * base_per_step`` base atoms
and ``p * q * quote_per_tick_step`` quote atoms, with no rounding anywhere.
Config validation refuses markets where those factors are not whole numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from engine.units import DecimalError, format_units, parse_units

if TYPE_CHECKING:
    from engine.config import AssetConfig, MarketConfig


@attrs.frozen
class AssetSpec:
    symbol: str
    decimals: int
    display_name: str


@attrs.frozen
class MarketSpec:
    symbol: str
    base: str
    quote: str
    base_decimals: int
    quote_decimals: int
    tick_scale: int  # decimals of the tick size
    step_scale: int  # decimals of the step size
    tick_units: int  # tick size in 10**-tick_scale
    step_units: int  # step size in 10**-step_scale
    base_per_step: int
    quote_per_tick_step: int
    min_qty_steps: int
    min_notional_quote: int  # quote atoms
    band_min: tuple[int, int]  # multiplier as (numerator, denominator)
    band_max: tuple[int, int]
    maker_fee_bps: int
    taker_fee_bps: int
    initial_state: str
    max_open_orders: int  # per account, over all markets (``[limits]``; the same in every spec): read where a spec is

    @classmethod
    def build(cls, symbol: str, market: MarketConfig, assets: dict[str, AssetConfig],
              max_open_orders: int) -> MarketSpec:
        from engine.config import MARKET_STATES, ConfigError, check_decimal, check_ratio, check_scale

        key = f"markets.{symbol}"
        for side in ("base", "quote"):
            if getattr(market, side) not in assets:
                raise ConfigError(f"{key}.{side}: unknown asset {getattr(market, side)!r}")
        if market.base == market.quote:
            raise ConfigError(f"{key}.quote: must differ from base ({market.base}); a market trades one asset for another")
        if symbol != f"{market.base}_{market.quote}":
            raise ConfigError(f"{key}: spot symbol must be BASE_QUOTE, i.e. {market.base}_{market.quote}")
        base_dec, quote_dec = assets[market.base].decimals, assets[market.quote].decimals
        tick_scale = check_scale(f"{key}.tick_size", market.tick_size)
        step_scale = check_scale(f"{key}.step_size", market.step_size)
        tick_units = check_decimal(f"{key}.tick_size", market.tick_size, tick_scale)
        step_units = check_decimal(f"{key}.step_size", market.step_size, step_scale)
        if tick_units <= 0 or step_units <= 0:
            raise ConfigError(f"{key}: tick_size and step_size must be positive")
        if step_scale > base_dec:
            raise ConfigError(f"{key}.step_size: finer than {market.base}'s {base_dec} decimals")
        base_per_step = step_units * 10 ** (base_dec - step_scale)
        # quote atoms per tick*step = tick*step*10**quote_dec must be a whole number
        num = tick_units * step_units * 10**quote_dec
        den = 10 ** (tick_scale + step_scale)
        if num % den:
            raise ConfigError(
                f"{key}: tick_size x step_size = {market.tick_size} x {market.step_size} is finer "
                f"than {market.quote}'s {quote_dec} decimals"
            )
        min_qty = check_decimal(f"{key}.min_quantity", market.min_quantity, step_scale)
        if min_qty <= 0 or min_qty % step_units:
            raise ConfigError(f"{key}.min_quantity: must be a positive multiple of step_size")
        min_notional = check_decimal(f"{key}.min_notional", market.min_notional, quote_dec)
        band_min = check_ratio(f"{key}.price_band_min_multiplier", market.price_band_min_multiplier)
        band_max = check_ratio(f"{key}.price_band_max_multiplier", market.price_band_max_multiplier)
        if not band_min[0] * band_max[1] <= band_max[0] * band_min[1] or band_max[0] == 0:
            raise ConfigError(f"{key}: price_band_min_multiplier must not exceed price_band_max_multiplier")
        for fee_key in ("maker_fee_bps", "taker_fee_bps"):
            if not 0 <= getattr(market, fee_key) <= 1000:
                raise ConfigError(f"{key}.{fee_key}: must be between 0 and 1000 basis points")
        if market.state not in MARKET_STATES:
            raise ConfigError(f"{key}.state: must be one of {', '.join(MARKET_STATES)}")
        return cls(
            symbol=symbol, base=market.base, quote=market.quote,
            base_decimals=base_dec, quote_decimals=quote_dec,
            tick_scale=tick_scale, step_scale=step_scale,
            tick_units=tick_units, step_units=step_units,
            base_per_step=base_per_step, quote_per_tick_step=num // den,
            min_qty_steps=min_qty // step_units, min_notional_quote=min_notional,
            band_min=band_min, band_max=band_max,
            maker_fee_bps=market.maker_fee_bps, taker_fee_bps=market.taker_fee_bps,
            initial_state=market.state, max_open_orders=max_open_orders,
        )

    # --- conversions between wire decimals and engine integers -------------

    def price_ticks(self, text: object) -> int:
        units = parse_units(text, self.tick_scale, what="price")
        if units <= 0:
            raise DecimalError("price must be positive")
        if units % self.tick_units:
            raise DecimalError(f"price {text} is not a multiple of the tick size {self.format_tick()}")
        return units // self.tick_units

    def qty_steps(self, text: object) -> int:
        units = parse_units(text, self.step_scale, what="quantity")
        if units <= 0:
            raise DecimalError("quantity must be positive")
        if units % self.step_units:
            raise DecimalError(f"quantity {text} is not a multiple of the step size {self.format_step()}")
        return units // self.step_units

    def quote_amount(self, text: object) -> int:
        value = parse_units(text, self.quote_decimals, what="quoteQuantity")
        if value <= 0:
            raise DecimalError("quoteQuantity must be positive")
        return value

    def format_price(self, price_ticks: int) -> str:
        return format_units(price_ticks * self.tick_units, self.tick_scale)

    def format_qty(self, qty_steps: int) -> str:
        return format_units(qty_steps * self.step_units, self.step_scale)

    def format_quote(self, quote: int) -> str:
        return format_units(quote, self.quote_decimals)

    def format_tick(self) -> str:
        return format_units(self.tick_units, self.tick_scale)

    def format_step(self) -> str:
        return format_units(self.step_units, self.step_scale)

    def notional(self, price_ticks: int, qty_steps: int) -> int:
        return price_ticks * qty_steps * self.quote_per_tick_step
