//! Money: ISO 4217 exponents and exact conversions between decimal text and minor units.
//!
//! Sluice's canonical money is `{amount-minor: s64, currency, exact}` where `amount-minor` uses
//! the currency's **ISO 4217** exponent (USD 2, JPY 0, BHD 3, CLF 4). Nothing here goes
//! through a float: decimal amounts are parsed as text.
//!
//! **Amounts more precise than the currency allows.** Providers do send them: Hotmart prices
//! a Chilean sale at `5625.21` CLP (ISO exponent 0), Stripe sends ISK and HUF with two
//! decimals. Refusing them would lose the whole record for one field, so the builders
//! ([`money_from_decimal_str`], [`money_from_provider_minor`]) round such an amount half to
//! even into the ISO exponent (`5625`) — sums of records stay integral — and keep the
//! provider's exact decimal text in `exact` (`"5625.21"`), so nothing is lost. `exact` is
//! `None` whenever `amount-minor` is exact. The strict conversions ([`minor_from_decimal_str`],
//! [`rescale_minor`]) still refuse, for callers that must not round.

use std::fmt;

use crate::types::Money;

/// Why an amount or a currency code was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// Not three ASCII letters.
    InvalidCurrency(String),
    /// Three letters, but not an active ISO 4217 currency with a minor unit.
    UnknownCurrency(String),
    /// The decimal text is not a plain decimal number (`-12.34`).
    InvalidAmount(String),
    /// More non-zero fractional digits than the currency's exponent allows.
    TooPrecise {
        /// The amount as given.
        amount: String,
        /// The currency's exponent.
        exponent: u32,
    },
    /// A conversion would lose a non-zero remainder.
    Inexact {
        /// The amount in the source unit.
        amount: i64,
        /// Source exponent.
        from: u32,
        /// Target exponent.
        to: u32,
    },
    /// The result does not fit in an `i64`.
    Overflow,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidCurrency(c) => write!(f, "invalid currency code {c:?}"),
            Self::UnknownCurrency(c) => write!(f, "unknown ISO 4217 currency {c:?}"),
            Self::InvalidAmount(a) => write!(f, "invalid decimal amount {a:?}"),
            Self::TooPrecise { amount, exponent } => {
                write!(
                    f,
                    "amount {amount:?} has more than {exponent} decimal places"
                )
            }
            Self::Inexact { amount, from, to } => write!(
                f,
                "amount {amount} with exponent {from} cannot be expressed exactly with exponent {to}"
            ),
            Self::Overflow => f.write_str("amount out of range"),
        }
    }
}

impl std::error::Error for MoneyError {}

/// Active ISO 4217 currencies whose minor unit is not 2 decimals.
const NON_TWO: &[(&str, u32)] = &[
    // 0 decimals
    ("BIF", 0),
    ("CLP", 0),
    ("DJF", 0),
    ("GNF", 0),
    ("ISK", 0),
    ("JPY", 0),
    ("KMF", 0),
    ("KRW", 0),
    ("PYG", 0),
    ("RWF", 0),
    ("UGX", 0),
    ("UYI", 0),
    ("VND", 0),
    ("VUV", 0),
    ("XAF", 0),
    ("XOF", 0),
    ("XPF", 0),
    // 3 decimals
    ("BHD", 3),
    ("IQD", 3),
    ("JOD", 3),
    ("KWD", 3),
    ("LYD", 3),
    ("OMR", 3),
    ("TND", 3),
    // 4 decimals
    ("CLF", 4),
    ("UYW", 4),
];

/// Active ISO 4217 currencies with 2 decimals (sorted). Includes a few codes withdrawn
/// recently but still seen in provider data (`ANG`, `CUC`, `SLL`, `ZWL`).
const TWO: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CNY", "COP", "COU", "CRC", "CUC", "CUP", "CVE", "CZK", "DKK", "DOP",
    "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IRR", "JMD", "KES", "KGS", "KHR",
    "KPW", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD", "MMK",
    "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO",
    "NOK", "NPR", "NZD", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "QAR", "RON", "RSD", "RUB",
    "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "USD",
    "USN", "UYU", "UZS", "VED", "VES", "WST", "XCD", "XCG", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// The ISO 4217 exponent (number of minor-unit digits) of an upper-case currency code.
///
/// `None` for unknown codes and for units without a minor unit (gold `XAU`, `XDR`, …).
pub fn iso_exponent(code: &str) -> Option<u32> {
    if let Some(&(_, e)) = NON_TWO.iter().find(|(c, _)| *c == code) {
        return Some(e);
    }
    TWO.binary_search(&code).ok().map(|_| 2)
}

/// Normalise a provider's currency code: trims, upper-cases, and checks that it is three
/// ASCII letters naming a known ISO 4217 currency.
pub fn currency_code(raw: &str) -> Result<String, MoneyError> {
    let t = raw.trim();
    if t.len() != 3 || !t.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(MoneyError::InvalidCurrency(raw.to_string()));
    }
    let code = t.to_ascii_uppercase();
    match iso_exponent(&code) {
        Some(_) => Ok(code),
        None => Err(MoneyError::UnknownCurrency(code)),
    }
}

/// `10^exp` as an `i64`, if it fits.
fn pow10(exp: u32) -> Result<i64, MoneyError> {
    10i64.checked_pow(exp).ok_or(MoneyError::Overflow)
}

/// Parse a decimal amount (`"1500.0"`, `"-12.5"`, `"+3"`, `"0.10"`) into minor units of
/// `currency` (which is validated with [`currency_code`]).
///
/// Exact: the text is parsed digit by digit, never through a float. Fractional digits beyond
/// the currency's exponent are accepted only when they are zeros (`"10.500"` in USD is fine,
/// `"10.505"` is [`MoneyError::TooPrecise`]). Exponent notation is refused.
pub fn minor_from_decimal_str(amount: &str, currency: &str) -> Result<i64, MoneyError> {
    let code = currency_code(currency)?;
    let exp = iso_exponent(&code).ok_or_else(|| MoneyError::UnknownCurrency(code.clone()))?;
    minor_from_decimal_str_exp(amount, exp)
}

/// A decimal text's sign, integer digits and fraction digits (not yet validated).
fn split_decimal(amount: &str) -> (bool, &str, &str) {
    let t = amount.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    (negative, int, frac)
}

/// Like [`minor_from_decimal_str`] with an explicit exponent.
pub fn minor_from_decimal_str_exp(amount: &str, exp: u32) -> Result<i64, MoneyError> {
    let invalid = || MoneyError::InvalidAmount(amount.to_string());
    let (negative, int, frac) = split_decimal(amount);
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let (kept, extra) = frac.split_at(frac.len().min(exp as usize));
    if extra.bytes().any(|b| b != b'0') {
        return Err(MoneyError::TooPrecise {
            amount: amount.to_string(),
            exponent: exp,
        });
    }
    // Integer digits, then the kept fraction, right-padded with zeros to `exp` digits.
    let mut value: i128 = 0;
    let padding = exp as usize - kept.len();
    for b in int
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', padding))
    {
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i128::from(b - b'0')))
            .ok_or(MoneyError::Overflow)?;
        if value > i128::from(i64::MAX) + 1 {
            return Err(MoneyError::Overflow);
        }
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).map_err(|_| MoneyError::Overflow)
}

/// Parse a decimal amount into minor units with exponent `exp`, rounding half to even when
/// it has more fractional digits than that (`"5625.21"` → 5625, `"0.125"` with 2 → 12,
/// `"0.135"` → 14, `"-2.5"` with 0 → -2). Returns the value and whether it was rounded.
pub fn minor_from_decimal_str_rounded(amount: &str, exp: u32) -> Result<(i64, bool), MoneyError> {
    let (negative, int, frac) = split_decimal(amount);
    let (kept, extra) = frac.split_at(frac.len().min(exp as usize));
    // The kept digits, exactly (this validates the text too).
    let sign = if negative { "-" } else { "" };
    let truncated =
        minor_from_decimal_str_exp(&format!("{sign}{int}.{kept}"), exp).map_err(|e| match e {
            MoneyError::InvalidAmount(_) => MoneyError::InvalidAmount(amount.to_string()),
            other => other,
        })?;
    if !extra.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MoneyError::InvalidAmount(amount.to_string()));
    }
    let rest = extra.trim_end_matches('0');
    if rest.is_empty() {
        return Ok((truncated, false));
    }
    // Half to even on the magnitude: above half rounds away from zero, a tie to even.
    let first = rest.as_bytes()[0];
    let away = match first.cmp(&b'5') {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => rest.len() > 1 || truncated % 2 != 0,
    };
    let step = if negative { -1 } else { 1 };
    let value = if away {
        truncated.checked_add(step).ok_or(MoneyError::Overflow)?
    } else {
        truncated
    };
    Ok((value, true))
}

/// Convert `amount` expressed with `from_exp` decimals to `to_exp` decimals, exactly.
///
/// `rescale_minor(1234, 0, 2) == Ok(123400)`; `rescale_minor(123400, 2, 0) == Ok(1234)`;
/// `rescale_minor(123456, 2, 0)` is [`MoneyError::Inexact`].
pub fn rescale_minor(amount: i64, from_exp: u32, to_exp: u32) -> Result<i64, MoneyError> {
    use std::cmp::Ordering;
    match to_exp.cmp(&from_exp) {
        Ordering::Equal => Ok(amount),
        Ordering::Greater => amount
            .checked_mul(pow10(to_exp - from_exp)?)
            .ok_or(MoneyError::Overflow),
        Ordering::Less => {
            let Ok(factor) = pow10(from_exp - to_exp) else {
                // A factor beyond i64 divides only zero exactly.
                return if amount == 0 {
                    Ok(0)
                } else {
                    Err(MoneyError::Inexact {
                        amount,
                        from: from_exp,
                        to: to_exp,
                    })
                };
            };
            if amount % factor != 0 {
                return Err(MoneyError::Inexact {
                    amount,
                    from: from_exp,
                    to: to_exp,
                });
            }
            Ok(amount / factor)
        }
    }
}

/// Build a canonical [`Money`] from an amount in the currency's ISO minor unit.
pub fn money(amount_minor: i64, currency: &str) -> Result<Money, MoneyError> {
    Ok(Money {
        amount_minor,
        currency: currency_code(currency)?,
        exact: None,
    })
}

/// The decimal text of `amount` with `exp` fractional digits (`123456, 2` → `"1234.56"`).
fn decimal_text(amount: i64, exp: u32) -> String {
    let digits = amount.unsigned_abs().to_string();
    let exp = exp as usize;
    let sign = if amount < 0 { "-" } else { "" };
    if exp == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = exp + 1);
    let (int, frac) = padded.split_at(padded.len() - exp);
    format!("{sign}{int}.{frac}")
}

/// Build a canonical [`Money`] from an amount a provider expresses with its own exponent
/// `provider_exp` (Stripe's two-decimal `ISK`), in the ISO exponent: exactly when it can
/// be, else rounded half to even with the provider's amount as decimal text in `exact`.
pub fn money_from_provider_minor(
    amount: i64,
    provider_exp: u32,
    currency: &str,
) -> Result<Money, MoneyError> {
    let code = currency_code(currency)?;
    let iso = iso_exponent(&code).ok_or_else(|| MoneyError::UnknownCurrency(code.clone()))?;
    match rescale_minor(amount, provider_exp, iso) {
        Ok(amount_minor) => Ok(Money {
            amount_minor,
            currency: code,
            exact: None,
        }),
        Err(MoneyError::Inexact { .. }) => {
            let text = decimal_text(amount, provider_exp);
            let (amount_minor, _) = minor_from_decimal_str_rounded(&text, iso)?;
            Ok(Money {
                amount_minor,
                currency: code,
                exact: Some(text),
            })
        }
        Err(e) => Err(e),
    }
}

/// Build a canonical [`Money`] from a decimal string (`"1500.00"`, `"BRL"`): exactly when
/// the currency's exponent allows, else rounded half to even with the text kept in `exact`
/// (`"5625.21"` CLP → 5625, exact `"5625.21"`).
pub fn money_from_decimal_str(amount: &str, currency: &str) -> Result<Money, MoneyError> {
    let code = currency_code(currency)?;
    let exp = iso_exponent(&code).ok_or_else(|| MoneyError::UnknownCurrency(code.clone()))?;
    let (amount_minor, rounded) = minor_from_decimal_str_rounded(amount, exp)?;
    let exact = rounded.then(|| {
        let t = amount.trim();
        t.strip_prefix('+').unwrap_or(t).to_string()
    });
    Ok(Money {
        amount_minor,
        currency: code,
        exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponents() {
        for (c, e) in [
            ("USD", 2),
            ("EUR", 2),
            ("BRL", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("CLP", 0),
            ("BHD", 3),
            ("KWD", 3),
            ("JOD", 3),
            ("OMR", 3),
            ("TND", 3),
            ("IQD", 3),
            ("LYD", 3),
            ("CLF", 4),
            ("UYW", 4),
            ("MGA", 2),
            ("ZWG", 2),
        ] {
            assert_eq!(iso_exponent(c), Some(e), "{c}");
        }
        assert_eq!(iso_exponent("XAU"), None);
        assert_eq!(iso_exponent("usd"), None);
        assert_eq!(iso_exponent("ABC"), None);
    }

    #[test]
    fn two_decimal_table_is_sorted_and_disjoint() {
        assert!(TWO.windows(2).all(|w| w[0] < w[1]));
        assert!(NON_TWO.iter().all(|(c, _)| !TWO.contains(c)));
    }

    #[test]
    fn currency_codes() {
        assert_eq!(currency_code("usd"), Ok("USD".into()));
        assert_eq!(currency_code(" jpy "), Ok("JPY".into()));
        assert!(matches!(
            currency_code("US"),
            Err(MoneyError::InvalidCurrency(_))
        ));
        assert!(matches!(
            currency_code("U$D"),
            Err(MoneyError::InvalidCurrency(_))
        ));
        assert!(matches!(
            currency_code("ÜSD"),
            Err(MoneyError::InvalidCurrency(_))
        ));
        assert!(matches!(
            currency_code("zzz"),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn decimal_strings() {
        assert_eq!(minor_from_decimal_str("1500.0", "BRL"), Ok(150000));
        assert_eq!(minor_from_decimal_str("1500", "brl"), Ok(150000));
        assert_eq!(minor_from_decimal_str("0.1", "USD"), Ok(10));
        assert_eq!(minor_from_decimal_str("19.99", "USD"), Ok(1999));
        assert_eq!(minor_from_decimal_str("-12.50", "EUR"), Ok(-1250));
        assert_eq!(minor_from_decimal_str("+3", "EUR"), Ok(300));
        assert_eq!(minor_from_decimal_str(".5", "EUR"), Ok(50));
        assert_eq!(minor_from_decimal_str("7.", "EUR"), Ok(700));
        assert_eq!(minor_from_decimal_str("-0.00", "EUR"), Ok(0));
        assert_eq!(minor_from_decimal_str("1000", "JPY"), Ok(1000));
        assert_eq!(minor_from_decimal_str("1000.000", "JPY"), Ok(1000));
        assert_eq!(minor_from_decimal_str("1.234", "BHD"), Ok(1234));
        assert_eq!(minor_from_decimal_str("10.500", "USD"), Ok(1050));
        assert_eq!(minor_from_decimal_str("1.5", "CLF"), Ok(15000));
        // 0.1 + 0.2 style float traps do not exist here.
        assert_eq!(minor_from_decimal_str("0.29", "USD"), Ok(29));
        assert_eq!(minor_from_decimal_str("4.35", "USD"), Ok(435));
    }

    #[test]
    fn decimal_string_errors() {
        assert!(matches!(
            minor_from_decimal_str("10.505", "USD"),
            Err(MoneyError::TooPrecise { .. })
        ));
        assert!(matches!(
            minor_from_decimal_str("1.5", "JPY"),
            Err(MoneyError::TooPrecise { .. })
        ));
        for bad in [
            "", "-", ".", "1e3", "1,5", "1.2.3", "abc", "--1", "0x10", " - 1", "NaN",
        ] {
            assert!(
                matches!(
                    minor_from_decimal_str(bad, "USD"),
                    Err(MoneyError::InvalidAmount(_))
                ),
                "{bad:?}"
            );
        }
        assert_eq!(
            minor_from_decimal_str("92233720368547758.07", "USD"),
            Ok(i64::MAX)
        );
        assert_eq!(
            minor_from_decimal_str("-92233720368547758.08", "USD"),
            Ok(i64::MIN)
        );
        assert_eq!(
            minor_from_decimal_str("92233720368547758.08", "USD"),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            minor_from_decimal_str("1".repeat(60).as_str(), "USD"),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            minor_from_decimal_str("1", "XXX"),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn rescaling() {
        assert_eq!(rescale_minor(1234, 0, 2), Ok(123400));
        assert_eq!(rescale_minor(123400, 2, 0), Ok(1234));
        assert_eq!(rescale_minor(-123400, 2, 0), Ok(-1234));
        assert_eq!(rescale_minor(5, 3, 3), Ok(5));
        assert!(matches!(
            rescale_minor(123456, 2, 0),
            Err(MoneyError::Inexact { .. })
        ));
        assert_eq!(rescale_minor(i64::MAX, 0, 2), Err(MoneyError::Overflow));
        assert_eq!(rescale_minor(1, 0, 40), Err(MoneyError::Overflow));
        assert_eq!(rescale_minor(0, 40, 0), Ok(0));
        assert!(matches!(
            rescale_minor(7, 40, 0),
            Err(MoneyError::Inexact { .. })
        ));
    }

    #[test]
    fn amounts_beyond_the_exponent_round_half_to_even_and_keep_their_text() {
        // Hotmart's CLP sale (tests/fixtures/corpus/hotmart/purchase_approved_clp_…).
        let m = money_from_decimal_str("5625.21", "CLP").unwrap();
        assert_eq!(
            (m.amount_minor, m.currency.as_str(), m.exact.as_deref()),
            (5625, "CLP", Some("5625.21"))
        );
        for (text, exp, expected) in [
            ("0.125", 2, 12),
            ("0.135", 2, 14),
            ("0.1251", 2, 13),
            ("2.5", 0, 2),
            ("3.5", 0, 4),
            ("-2.5", 0, -2),
            ("-3.5", 0, -4),
            ("-0.126", 2, -13),
            ("7.49999", 0, 7),
        ] {
            assert_eq!(
                minor_from_decimal_str_rounded(text, exp),
                Ok((expected, true)),
                "{text}"
            );
        }
        assert_eq!(
            minor_from_decimal_str_rounded("10.500", 2),
            Ok((1050, false))
        );
        // Exact amounts have no `exact`.
        assert_eq!(money_from_decimal_str("6694", "CLP").unwrap().exact, None);
        assert_eq!(
            money_from_decimal_str("+19.990", "USD").unwrap().exact,
            None
        );
        assert_eq!(
            money_from_decimal_str("+1.5", "JPY")
                .unwrap()
                .exact
                .as_deref(),
            Some("1.5")
        );
        // Stripe sends ISK with two decimals; 12345 is 123.45 ISK.
        let m = money_from_provider_minor(12345, 2, "isk").unwrap();
        assert_eq!((m.amount_minor, m.exact.as_deref()), (123, Some("123.45")));
        let m = money_from_provider_minor(-5, 2, "isk").unwrap();
        assert_eq!((m.amount_minor, m.exact.as_deref()), (0, Some("-0.05")));
        for bad in ["1.2x", "1e3", "", "1.5.5", "1.23-"] {
            assert!(money_from_decimal_str(bad, "CLP").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn money_builders() {
        let m = money_from_provider_minor(100000, 2, "isk").unwrap();
        assert_eq!((m.amount_minor, m.currency.as_str()), (1000, "ISK"));
        let m = money_from_provider_minor(1000, 0, "mga").unwrap();
        assert_eq!((m.amount_minor, m.currency.as_str()), (100000, "MGA"));
        let m = money_from_decimal_str("1.5", "kwd").unwrap();
        assert_eq!((m.amount_minor, m.currency.as_str()), (1500, "KWD"));
        assert_eq!(money(5, "jpy").unwrap().currency, "JPY");
    }
}
