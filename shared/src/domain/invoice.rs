//! Turning a period's plans and usage into an invoice. Pure arithmetic in integer cents: base
//! prices prorated by the second, usage priced by graduated overage tiers.

use super::{Invoice, InvoiceLine, Plan, Tier};
use chrono::{DateTime, NaiveTime, Utc};
use std::collections::BTreeMap;

/// The invoice of the period `[period_start, period_end)`.
///
/// The plans the org was on come in order, as [`super::Subscription::spans_within`] yields them
/// once each id is resolved to its plan: `earlier` spans first, then `current`, the span that
/// reaches the period's end. `current` is separate so there is always a plan to price usage
/// with and to name on the invoice; the function is total.
///
/// - Each span's base price is prorated by the seconds it covered of the period, rounded half
///   up, and becomes one line (kept even at 0, so a free plan shows as a 0 line). Parts of a
///   span outside the period are ignored.
/// - `usage` (units per meter for the whole period) is priced by `current`'s plan with its full
///   quota included, meters in map order, meters with no units skipped.
/// - Every amount is assumed to be in `current`'s currency.
pub fn compute_invoice(
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    earlier: &[(&Plan, DateTime<Utc>, DateTime<Utc>)],
    current: (&Plan, DateTime<Utc>, DateTime<Utc>),
    usage: &BTreeMap<String, u64>,
) -> Invoice {
    let period_secs = seconds_between(period_start, period_end);
    let mut lines = Vec::new();
    for &(plan, from, to) in earlier.iter().chain(std::iter::once(&current)) {
        let (from, to) = (from.max(period_start), to.min(period_end));
        let whole = from <= period_start && to >= period_end;
        let amount = if whole {
            plan.price_cents
        } else {
            prorate(plan.price_cents, seconds_between(from, to), period_secs)
        };
        let description = if whole {
            plan.name.clone()
        } else {
            format!("{} ({} – {})", plan.name, day(from), day(to))
        };
        lines.push(InvoiceLine {
            description,
            meter: None,
            quantity: 1,
            unit_amount_cents: amount,
            amount_cents: amount,
        });
    }

    let (plan, _, _) = current;
    for (meter, &used) in usage {
        if used > 0 {
            usage_lines(plan, meter, used, &mut lines);
        }
    }

    let total_cents = lines
        .iter()
        .fold(0u64, |sum, line| sum.saturating_add(line.amount_cents));
    Invoice {
        period_start,
        period_end,
        plan_id: plan.id.clone(),
        currency: plan.currency.clone(),
        lines,
        total_cents,
    }
}

/// `price * part / whole`, rounded half up, in `u128` so no product can overflow. A part at
/// least as long as the whole (or an empty whole) is the full price.
fn prorate(price_cents: u64, part_secs: u64, whole_secs: u64) -> u64 {
    if whole_secs == 0 || part_secs >= whole_secs {
        return price_cents;
    }
    // Both factors are below 2^64, so their product fits a u128; the remainder is below
    // `whole`, so doubling it fits too.
    let product = u128::from(price_cents).saturating_mul(u128::from(part_secs));
    let whole = u128::from(whole_secs);
    let (quotient, remainder) = (product / whole, product % whole);
    let rounded = if remainder.saturating_mul(2) >= whole {
        quotient.saturating_add(1)
    } else {
        quotient
    };
    // At most `price_cents`, because part < whole.
    u64::try_from(rounded).unwrap_or(price_cents)
}

/// Whole seconds from `from` to `to`; 0 when `to` is not after `from`.
fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
    u64::try_from((to - from).num_seconds()).unwrap_or(0)
}

/// A span boundary for people: the date, plus the time when it is not midnight.
fn day(at: DateTime<Utc>) -> String {
    if at.time() == NaiveTime::MIN {
        at.format("%Y-%m-%d").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// The lines of `used` units of `meter` under `plan`: the included units, then one line per
/// overage tier reached. A meter without overage tiers is included in full (its quota, if any,
/// is a hard cap enforced at ingestion, not a price).
fn usage_lines(plan: &Plan, meter: &str, used: u64, lines: &mut Vec<InvoiceLine>) {
    let tiers = plan
        .overage
        .get(meter)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if tiers.is_empty() {
        lines.push(InvoiceLine {
            description: format!("{meter}, included"),
            meter: Some(meter.to_owned()),
            quantity: used,
            unit_amount_cents: 0,
            amount_cents: 0,
        });
        return;
    }
    let included = used.min(plan.included(meter).unwrap_or(0));
    if included > 0 {
        lines.push(InvoiceLine {
            description: format!("{meter}, included"),
            meter: Some(meter.to_owned()),
            quantity: included,
            unit_amount_cents: 0,
            amount_cents: 0,
        });
    }
    overage_lines(meter, used.saturating_sub(included), tiers, lines);
}

/// One line per tier that `over` overage units reach. Tier `i` prices overage units
/// `(up_to of tier i-1, up_to of tier i]`; the last tier has no end whatever its `up_to` says
/// (validation makes it `None`), so every unit is priced.
fn overage_lines(meter: &str, over: u64, tiers: &[Tier], lines: &mut Vec<InvoiceLine>) {
    let mut floor = 0u64;
    for (i, tier) in tiers.iter().enumerate() {
        if over <= floor {
            break;
        }
        let last = i.saturating_add(1) == tiers.len();
        let ceiling = match tier.up_to {
            Some(up_to) if !last => up_to,
            _ => u64::MAX,
        };
        if ceiling <= floor {
            continue; // a tier that does not rise prices nothing
        }
        let quantity = over.min(ceiling).saturating_sub(floor);
        let unit = tier.unit_amount_cents;
        lines.push(InvoiceLine {
            description: format!(
                "{meter}, overage units {}–{} at {unit}¢ each",
                floor.saturating_add(1),
                floor.saturating_add(quantity),
            ),
            meter: Some(meter.to_owned()),
            quantity,
            unit_amount_cents: unit,
            amount_cents: quantity.saturating_mul(unit),
        });
        floor = ceiling;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PlanId;
    use chrono::TimeZone;

    fn nov(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 0, 0, 0)
            .single()
            .expect("date")
    }

    fn dec1() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0)
            .single()
            .expect("date")
    }

    fn tier(up_to: Option<u64>, unit_amount_cents: u64) -> Tier {
        Tier {
            up_to,
            unit_amount_cents,
        }
    }

    fn plan(
        slug: &str,
        name: &str,
        price_cents: u64,
        quotas: &[(&str, u64)],
        overage: &[(&str, Vec<Tier>)],
    ) -> Plan {
        Plan {
            id: PlanId::parse(&format!("pln_{slug}")).expect("id"),
            name: name.to_owned(),
            price_cents,
            currency: "usd".to_owned(),
            rate_limit_rpm: 600,
            quotas: quotas.iter().map(|&(m, q)| (m.to_owned(), q)).collect(),
            overage: overage
                .iter()
                .map(|(m, t)| ((*m).to_owned(), t.clone()))
                .collect(),
            archived: false,
            created_at: nov(1),
            updated_at: nov(1),
        }
    }

    fn free() -> Plan {
        plan("free", "Free", 0, &[("requests", 1_000)], &[])
    }

    /// 100k requests and 5k of anything else included; requests overage in three tiers,
    /// tokens overage in one.
    fn pro() -> Plan {
        plan(
            "pro",
            "Pro",
            2900,
            &[("requests", 100_000), ("*", 5_000)],
            &[
                (
                    "requests",
                    vec![tier(Some(10_000), 5), tier(Some(50_000), 3), tier(None, 1)],
                ),
                ("tokens", vec![tier(None, 2)]),
            ],
        )
    }

    /// Nothing included at all; requests cost 1¢ each.
    fn payg() -> Plan {
        plan(
            "payg",
            "Pay as you go",
            0,
            &[],
            &[("requests", vec![tier(None, 1)])],
        )
    }

    fn odd() -> Plan {
        plan("odd", "Odd", 2901, &[], &[])
    }

    fn cheap() -> Plan {
        plan("cheap", "Cheap", 100, &[], &[])
    }

    /// (meter, quantity, unit_amount_cents, amount_cents)
    type Line = (Option<&'static str>, u64, u64, u64);

    struct Case {
        name: &'static str,
        spans: Vec<(Plan, DateTime<Utc>, DateTime<Utc>)>,
        usage: &'static [(&'static str, u64)],
        lines: Vec<Line>,
        total: u64,
    }

    fn invoice_of(
        spans: &[(Plan, DateTime<Utc>, DateTime<Utc>)],
        usage: &[(&str, u64)],
    ) -> Invoice {
        let spans: Vec<_> = spans.iter().map(|(p, f, t)| (p, *f, *t)).collect();
        let (current, earlier) = spans.split_last().expect("spans");
        let usage = usage.iter().map(|&(m, q)| (m.to_owned(), q)).collect();
        compute_invoice(nov(1), dec1(), earlier, *current, &usage)
    }

    #[test]
    fn invoice_table() {
        let month = |plan: Plan| vec![(plan, nov(1), dec1())];
        let cases = vec![
            Case {
                name: "no usage",
                spans: month(pro()),
                usage: &[("requests", 0)],
                lines: vec![(None, 1, 2900, 2900)],
                total: 2900,
            },
            Case {
                name: "inside the quota",
                spans: month(pro()),
                usage: &[("requests", 40_000)],
                lines: vec![(None, 1, 2900, 2900), (Some("requests"), 40_000, 0, 0)],
                total: 2900,
            },
            Case {
                name: "exactly at the quota",
                spans: month(pro()),
                usage: &[("requests", 100_000)],
                lines: vec![(None, 1, 2900, 2900), (Some("requests"), 100_000, 0, 0)],
                total: 2900,
            },
            Case {
                name: "exactly at a tier boundary",
                spans: month(pro()),
                usage: &[("requests", 110_000)],
                lines: vec![
                    (None, 1, 2900, 2900),
                    (Some("requests"), 100_000, 0, 0),
                    (Some("requests"), 10_000, 5, 50_000),
                ],
                total: 52_900,
            },
            Case {
                name: "one past a tier boundary",
                spans: month(pro()),
                usage: &[("requests", 110_001)],
                lines: vec![
                    (None, 1, 2900, 2900),
                    (Some("requests"), 100_000, 0, 0),
                    (Some("requests"), 10_000, 5, 50_000),
                    (Some("requests"), 1, 3, 3),
                ],
                total: 52_903,
            },
            Case {
                name: "across three tiers",
                spans: month(pro()),
                usage: &[("requests", 200_000)],
                lines: vec![
                    (None, 1, 2900, 2900),
                    (Some("requests"), 100_000, 0, 0),
                    (Some("requests"), 10_000, 5, 50_000),
                    (Some("requests"), 40_000, 3, 120_000),
                    (Some("requests"), 50_000, 1, 50_000),
                ],
                total: 222_900,
            },
            Case {
                name: "a mid-period plan change",
                spans: vec![(free(), nov(1), nov(16)), (pro(), nov(16), dec1())],
                usage: &[("requests", 120_000)],
                lines: vec![
                    (None, 1, 0, 0),
                    (None, 1, 1450, 1450),
                    (Some("requests"), 100_000, 0, 0),
                    (Some("requests"), 10_000, 5, 50_000),
                    (Some("requests"), 10_000, 3, 30_000),
                ],
                total: 81_450,
            },
            Case {
                // 2901 * 15/30 = 1450.5 -> 1451; 100 * 10/30 = 33.3 -> 33;
                // 2901 * 5/30 = 483.5 -> 484.
                name: "proration rounds half up",
                spans: vec![
                    (odd(), nov(1), nov(16)),
                    (cheap(), nov(16), nov(26)),
                    (odd(), nov(26), dec1()),
                ],
                usage: &[],
                lines: vec![
                    (None, 1, 1451, 1451),
                    (None, 1, 33, 33),
                    (None, 1, 484, 484),
                ],
                total: 1968,
            },
            Case {
                name: "a meter with no overage tiers is included even past its quota",
                spans: month(pro()),
                usage: &[("emails", 7_000)],
                lines: vec![(None, 1, 2900, 2900), (Some("emails"), 7_000, 0, 0)],
                total: 2900,
            },
            Case {
                name: "a meter without any quota",
                spans: month(payg()),
                usage: &[("requests", 250), ("storage", 9)],
                lines: vec![
                    (None, 1, 0, 0),
                    (Some("requests"), 250, 1, 250),
                    (Some("storage"), 9, 0, 0),
                ],
                total: 250,
            },
            Case {
                name: "the * quota applies to a tiered meter it does not name",
                spans: month(pro()),
                usage: &[("tokens", 8_000)],
                lines: vec![
                    (None, 1, 2900, 2900),
                    (Some("tokens"), 5_000, 0, 0),
                    (Some("tokens"), 3_000, 2, 6_000),
                ],
                total: 8_900,
            },
            Case {
                name: "meters in name order",
                spans: month(pro()),
                usage: &[("tokens", 5_001), ("emails", 1), ("requests", 1)],
                lines: vec![
                    (None, 1, 2900, 2900),
                    (Some("emails"), 1, 0, 0),
                    (Some("requests"), 1, 0, 0),
                    (Some("tokens"), 5_000, 0, 0),
                    (Some("tokens"), 1, 2, 2),
                ],
                total: 2902,
            },
        ];
        for case in cases {
            let invoice = invoice_of(&case.spans, case.usage);
            let lines: Vec<(Option<&str>, u64, u64, u64)> = invoice
                .lines
                .iter()
                .map(|l| {
                    let meter = l.meter.as_deref();
                    (meter, l.quantity, l.unit_amount_cents, l.amount_cents)
                })
                .collect();
            assert_eq!(lines, case.lines, "{}", case.name);
            assert_eq!(invoice.total_cents, case.total, "{}", case.name);
            let sum: u64 = invoice.lines.iter().map(|l| l.amount_cents).sum();
            assert_eq!(sum, invoice.total_cents, "{}", case.name);
            let last = &case.spans.last().expect("spans").0;
            assert_eq!(invoice.plan_id, last.id, "{}", case.name);
            assert_eq!(invoice.currency, "usd", "{}", case.name);
        }
    }

    #[test]
    fn invoice_descriptions_name_plans_spans_and_tiers() {
        let invoice = invoice_of(
            &[(free(), nov(1), nov(16)), (pro(), nov(16), dec1())],
            &[("requests", 200_000)],
        );
        let descriptions: Vec<&str> = invoice
            .lines
            .iter()
            .map(|l| l.description.as_str())
            .collect();
        assert_eq!(
            descriptions,
            vec![
                "Free (2026-11-01 – 2026-11-16)",
                "Pro (2026-11-16 – 2026-12-01)",
                "requests, included",
                "requests, overage units 1–10000 at 5¢ each",
                "requests, overage units 10001–50000 at 3¢ each",
                "requests, overage units 50001–100000 at 1¢ each",
            ]
        );
        let whole = invoice_of(&[(pro(), nov(1), dec1())], &[]);
        assert_eq!(
            whole.lines.first().map(|l| l.description.as_str()),
            Some("Pro")
        );
        let noon = nov(16) + chrono::Duration::hours(12);
        let split = invoice_of(&[(free(), nov(1), noon), (pro(), noon, dec1())], &[]);
        assert_eq!(
            split.lines.first().map(|l| l.description.as_str()),
            Some("Free (2026-11-01 – 2026-11-16 12:00 UTC)")
        );
    }

    #[test]
    fn invoice_prorates_by_the_second_and_clips_spans_to_the_period() {
        // 2900 * 1 s / 2,592,000 s rounds to 0; a span sticking out of the period counts only
        // its part inside, and one covering the whole period is the full price.
        let one_second_later = nov(1) + chrono::Duration::seconds(1);
        let invoice = invoice_of(
            &[
                (pro(), nov(1), one_second_later),
                (pro(), one_second_later, dec1() + chrono::Duration::days(3)),
            ],
            &[],
        );
        let amounts: Vec<u64> = invoice.lines.iter().map(|l| l.amount_cents).collect();
        assert_eq!(amounts, vec![0, 2900]);
        let before = nov(1) - chrono::Duration::days(40);
        let invoice = invoice_of(&[(pro(), before, dec1())], &[]);
        assert_eq!(invoice.total_cents, 2900);
        assert_eq!(
            invoice.lines.first().map(|l| l.description.as_str()),
            Some("Pro")
        );
    }

    #[test]
    fn invoice_prorate_helper_rounds_half_up() {
        for (price, part, whole, expected) in [
            (1, 1, 2, 1),
            (1, 1, 3, 0),
            (2, 1, 3, 1),
            (2901, 15, 30, 1451),
            (100, 10, 30, 33),
            (100, 20, 30, 67),
            (7, 0, 30, 0),
            (7, 30, 30, 7),
            (7, 31, 30, 7),
            (7, 5, 0, 7),
            (u64::MAX, u64::MAX - 1, u64::MAX, u64::MAX - 1),
        ] {
            assert_eq!(
                prorate(price, part, whole),
                expected,
                "{price} {part}/{whole}"
            );
        }
    }

    #[test]
    fn invoice_amounts_saturate_instead_of_overflowing() {
        let huge = plan(
            "huge",
            "Huge",
            u64::MAX,
            &[],
            &[("requests", vec![tier(None, u64::MAX)])],
        );
        let invoice = invoice_of(&[(huge, nov(1), dec1())], &[("requests", u64::MAX)]);
        assert_eq!(invoice.total_cents, u64::MAX);
    }
}
