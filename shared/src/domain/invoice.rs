//! Turning a period's plans and usage into an invoice. Pure arithmetic in integer cents: base
//! prices prorated by the second and rounded once for the period, usage priced by graduated
//! overage tiers of the plan it was counted under.

use super::{Invoice, InvoiceLine, Plan, Tier};
use chrono::{DateTime, NaiveTime, Utc};
use std::collections::BTreeMap;

/// One plan's share of a period as the invoice prices it: the plan, the part of the period it
/// covered, and the units counted while it was in force.
#[derive(Debug, Clone, Copy)]
pub struct PricedSpan<'a> {
    /// The plan in force.
    pub plan: &'a Plan,
    /// The span's start.
    pub from: DateTime<Utc>,
    /// The span's end (exclusive).
    pub to: DateTime<Utc>,
    /// Units per meter counted under this plan.
    pub usage: &'a BTreeMap<String, u64>,
}

/// The invoice of the period `[period_start, period_end)`.
///
/// The plans the org was on come in order, as [`super::Subscription::usage_within`] yields
/// them once each id is resolved to its plan: `earlier` spans first, then `current`, the span
/// that reaches the period's end and names the invoice's plan. The function is total.
///
/// - Each span's base price is prorated by the seconds it covered of the period and becomes
///   one line (kept even at 0, so a free plan shows as a 0 line). The exact prorated amounts
///   are summed before rounding, so the base total is rounded once (half up): a line is the
///   rounded running sum minus the one before, never more than a cent off its own share, and
///   many short spans cannot each round down to 0. Parts of a span outside the period are
///   ignored.
/// - Each span's units are priced by that span's plan, as the next units of the period: the
///   included quota and the overage tiers count from the first unit of the period, whichever
///   plan it was counted under (the quota is per period, as metering enforces it). Meters in
///   map order within a span, meters with no units skipped.
/// - Every amount is assumed to be in `current`'s currency.
pub fn compute_invoice(
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    earlier: &[PricedSpan<'_>],
    current: &PricedSpan<'_>,
) -> Invoice {
    let spans: Vec<&PricedSpan<'_>> = earlier.iter().chain(std::iter::once(current)).collect();
    let period_secs = seconds_between(period_start, period_end);
    let mut lines = Vec::new();
    // The exact base amounts so far, in cents times `period_secs`, and their rounded value.
    let (mut exact, mut billed) = (0u128, 0u64);
    for span in &spans {
        let (from, to) = (span.from.max(period_start), span.to.min(period_end));
        let whole = from <= period_start && to >= period_end;
        let part_secs = if whole {
            period_secs
        } else {
            seconds_between(from, to).min(period_secs)
        };
        let amount = if period_secs == 0 {
            span.plan.price_cents
        } else {
            exact = exact.saturating_add(
                u128::from(span.plan.price_cents).saturating_mul(u128::from(part_secs)),
            );
            let running = rounded_quotient(exact, u128::from(period_secs));
            let amount = running.saturating_sub(billed);
            billed = running;
            amount
        };
        let description = if whole {
            span.plan.name.clone()
        } else {
            format!("{} ({} – {})", span.plan.name, day(from), day(to))
        };
        lines.push(InvoiceLine {
            description,
            meter: None,
            quantity: 1,
            unit_amount_cents: amount,
            amount_cents: amount,
        });
    }

    let several = spans.len() > 1;
    let mut position: BTreeMap<&str, u64> = BTreeMap::new();
    for span in &spans {
        let suffix = if several {
            format!(" ({})", span.plan.name)
        } else {
            String::new()
        };
        for (meter, &used) in span.usage {
            if used == 0 {
                continue;
            }
            let before = position.entry(meter.as_str()).or_insert(0);
            usage_lines(span.plan, meter, *before, used, &suffix, &mut lines);
            *before = before.saturating_add(used);
        }
    }

    let total_cents = lines
        .iter()
        .fold(0u64, |sum, line| sum.saturating_add(line.amount_cents));
    Invoice {
        period_start,
        period_end,
        plan_id: current.plan.id.clone(),
        currency: current.plan.currency.clone(),
        lines,
        total_cents,
    }
}

/// `numerator / whole` rounded half up, saturating at `u64::MAX`; `whole` must not be 0.
fn rounded_quotient(numerator: u128, whole: u128) -> u64 {
    let (quotient, remainder) = (numerator / whole, numerator % whole);
    let rounded = if remainder.saturating_mul(2) >= whole {
        quotient.saturating_add(1)
    } else {
        quotient
    };
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// `price * part / whole`, rounded half up, in `u128` so no product can overflow. A part at
/// least as long as the whole (or an empty whole) is the full price.
#[cfg(test)]
fn prorate(price_cents: u64, part_secs: u64, whole_secs: u64) -> u64 {
    if whole_secs == 0 || part_secs >= whole_secs {
        return price_cents;
    }
    let product = u128::from(price_cents).saturating_mul(u128::from(part_secs));
    // At most `price_cents`, because part < whole.
    rounded_quotient(product, u128::from(whole_secs)).min(price_cents)
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

/// The lines of `used` units of `meter` under `plan`, when `before` units of the period came
/// before them: the part within the included quota, then one line per overage tier reached.
/// A meter without overage tiers is included in full (its quota, if any, is a hard cap
/// enforced at ingestion, not a price).
fn usage_lines(
    plan: &Plan,
    meter: &str,
    before: u64,
    used: u64,
    suffix: &str,
    lines: &mut Vec<InvoiceLine>,
) {
    let tiers = plan
        .overage
        .get(meter)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if tiers.is_empty() {
        lines.push(InvoiceLine {
            description: format!("{meter}, included{suffix}"),
            meter: Some(meter.to_owned()),
            quantity: used,
            unit_amount_cents: 0,
            amount_cents: 0,
        });
        return;
    }
    let quota = plan.included(meter).unwrap_or(0);
    let (start, end) = (before, before.saturating_add(used));
    let included = end.min(quota).saturating_sub(start.min(quota));
    if included > 0 {
        lines.push(InvoiceLine {
            description: format!("{meter}, included{suffix}"),
            meter: Some(meter.to_owned()),
            quantity: included,
            unit_amount_cents: 0,
            amount_cents: 0,
        });
    }
    let over = (
        start.max(quota).saturating_sub(quota),
        end.max(quota).saturating_sub(quota),
    );
    overage_lines(meter, over, tiers, suffix, lines);
}

/// One line per tier that the overage units `[over.0, over.1)` (0-based, counted from the
/// first unit beyond the quota) reach. Tier `i` prices overage units `(up_to of tier i-1,
/// up_to of tier i]` in 1-based terms; the last tier has no end whatever its `up_to` says
/// (validation makes it `None`), so every unit is priced.
fn overage_lines(
    meter: &str,
    over: (u64, u64),
    tiers: &[Tier],
    suffix: &str,
    lines: &mut Vec<InvoiceLine>,
) {
    let (first, end) = over;
    let mut floor = 0u64;
    for (i, tier) in tiers.iter().enumerate() {
        if end <= floor {
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
        let (low, high) = (first.max(floor), end.min(ceiling));
        if high > low {
            let quantity = high.saturating_sub(low);
            let unit = tier.unit_amount_cents;
            lines.push(InvoiceLine {
                description: format!(
                    "{meter}, overage units {}–{high} at {unit}¢ each{suffix}",
                    low.saturating_add(1),
                ),
                meter: Some(meter.to_owned()),
                quantity,
                unit_amount_cents: unit,
                amount_cents: quantity.saturating_mul(unit),
            });
        }
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

    /// A plan, its span, and the units counted under it.
    type SpanWithUsage = (Plan, DateTime<Utc>, DateTime<Utc>, BTreeMap<String, u64>);

    fn invoice_of(
        spans: &[(Plan, DateTime<Utc>, DateTime<Utc>)],
        usage: &[(&str, u64)],
    ) -> Invoice {
        // The whole period's usage counted under the last plan.
        let usage: BTreeMap<String, u64> = usage.iter().map(|&(m, q)| (m.to_owned(), q)).collect();
        let none = BTreeMap::new();
        let with_usage: Vec<_> = spans
            .iter()
            .enumerate()
            .map(|(i, (plan, from, to))| {
                (
                    plan.clone(),
                    *from,
                    *to,
                    if i + 1 == spans.len() {
                        usage.clone()
                    } else {
                        none.clone()
                    },
                )
            })
            .collect();
        invoice_by_span(&with_usage)
    }

    fn invoice_by_span(spans: &[SpanWithUsage]) -> Invoice {
        let priced: Vec<PricedSpan<'_>> = spans
            .iter()
            .map(|(plan, from, to, usage)| PricedSpan {
                plan,
                from: *from,
                to: *to,
                usage,
            })
            .collect();
        let (current, earlier) = priced.split_last().expect("spans");
        compute_invoice(nov(1), dec1(), earlier, current)
    }

    fn units(usage: &[(&str, u64)]) -> BTreeMap<String, u64> {
        usage.iter().map(|&(m, q)| (m.to_owned(), q)).collect()
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
                // 2901 * 15/30 = 1450.5, 100 * 10/30 = 33.3, 2901 * 5/30 = 483.5: 1967.3 in
                // all, rounded once to 1967; each line is the running sum rounded (1451, 1484,
                // 1967) minus the one before.
                name: "proration is rounded once, half up",
                spans: vec![
                    (odd(), nov(1), nov(16)),
                    (cheap(), nov(16), nov(26)),
                    (odd(), nov(26), dec1()),
                ],
                usage: &[],
                lines: vec![
                    (None, 1, 1451, 1451),
                    (None, 1, 33, 33),
                    (None, 1, 483, 483),
                ],
                total: 1967,
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
                "requests, included (Pro)",
                "requests, overage units 1–10000 at 5¢ each (Pro)",
                "requests, overage units 10001–50000 at 3¢ each (Pro)",
                "requests, overage units 50001–100000 at 1¢ each (Pro)",
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
    fn invoice_base_total_is_rounded_once_not_per_span() {
        // Sixty 6-hour spans of a 2¢ plan are 1/60 ¢ each: rounded one by one they would all
        // be 0; summed first they make 15 days of the plan, exactly 1 ¢.
        let two = plan("two", "Two", 2, &[], &[]);
        let mut spans = Vec::new();
        let mut at = nov(1);
        for _ in 0..60 {
            let next = at + chrono::Duration::hours(6);
            spans.push((two.clone(), at, next));
            at = next;
        }
        spans.push((free(), at, dec1()));
        let invoice = invoice_of(&spans, &[]);
        // 60 spans * 6 h = 15 days of a 2¢ plan: exactly 1 ¢.
        assert_eq!(invoice.total_cents, 1);
        let sum: u64 = invoice.lines.iter().map(|l| l.amount_cents).sum();
        assert_eq!(sum, 1);
        assert!(invoice.lines.iter().all(|l| l.amount_cents <= 1));
    }

    #[test]
    fn invoice_prices_usage_by_the_plan_it_was_counted_under() {
        // 250 requests on pay-as-you-go (1¢ each), then 100,000 more on pro: pro's quota of
        // 100,000 counts from the period's first unit, so 99,750 are included and 250 are
        // pro's first overage tier (5¢).
        let invoice = invoice_by_span(&[
            (payg(), nov(1), nov(16), units(&[("requests", 250)])),
            (pro(), nov(16), dec1(), units(&[("requests", 100_000)])),
        ]);
        let lines: Vec<(Option<&str>, u64, u64, u64)> = invoice
            .lines
            .iter()
            .map(|l| {
                (
                    l.meter.as_deref(),
                    l.quantity,
                    l.unit_amount_cents,
                    l.amount_cents,
                )
            })
            .collect();
        assert_eq!(
            lines,
            vec![
                (None, 1, 0, 0),
                (None, 1, 1450, 1450),
                (Some("requests"), 250, 1, 250),
                (Some("requests"), 99_750, 0, 0),
                (Some("requests"), 250, 5, 1250),
            ]
        );
        assert_eq!(invoice.total_cents, 2950);
        assert_eq!(invoice.plan_id, pro().id);
        // The other way round, usage under pro stays pro's even though the period ends on
        // pay-as-you-go.
        let invoice = invoice_by_span(&[
            (pro(), nov(1), nov(16), units(&[("requests", 90_000)])),
            (payg(), nov(16), dec1(), units(&[("requests", 10)])),
        ]);
        assert_eq!(invoice.total_cents, 1450 + 10);
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
