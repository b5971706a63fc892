//! Money: ISO 4217 exponents and exact conversions between decimal text and minor units.
//!
//! Sluice's canonical money is `{amount-minor: s64, currency}` where `amount-minor` uses the
//! currency's **ISO 4217** exponent (USD 2, JPY 0, BHD 3, CLF 4). Nothing here goes through a
//! float: decimal amounts are parsed as text and every conversion is exact or an error.

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

/// Like [`minor_from_decimal_str`] with an explicit exponent.
pub fn minor_from_decimal_str_exp(amount: &str, exp: u32) -> Result<i64, MoneyError> {
    let invalid = || MoneyError::InvalidAmount(amount.to_string());
    let t = amount.trim();
    let (negative, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
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
    })
}

/// Build a canonical [`Money`] from an amount a provider expresses with its own exponent
/// `provider_exp` (e.g. Stripe's zero-decimal `ISK`), rescaled exactly to ISO.
pub fn money_from_provider_minor(
    amount: i64,
    provider_exp: u32,
    currency: &str,
) -> Result<Money, MoneyError> {
    let code = currency_code(currency)?;
    let iso = iso_exponent(&code).ok_or_else(|| MoneyError::UnknownCurrency(code.clone()))?;
    Ok(Money {
        amount_minor: rescale_minor(amount, provider_exp, iso)?,
        currency: code,
    })
}

/// Build a canonical [`Money`] from a decimal string (`"1500.00"`, `"BRL"`).
pub fn money_from_decimal_str(amount: &str, currency: &str) -> Result<Money, MoneyError> {
    Ok(Money {
        amount_minor: minor_from_decimal_str(amount, currency)?,
        currency: currency_code(currency)?,
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
