//! A metered request with its events: the input and answer of [`super::Limiter::check_batch`].
//!
//! Quota is spent per event, once per `(org, event id)` within the dedup window: the limiter
//! remembers the ids it counted (in the same atomic step as the spend), so a client's retry of a
//! batch is answered without spending quota again. A request the sink then refuses gives back
//! what it spent ([`Refund`]), so a 503 spends nothing.

use super::{Decision, LimitRequest};

/// One event of a metered request, as the limiter counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCharge {
    /// The client's event id (unique within the request).
    pub id: String,
    /// The meter it counts (for the org's meter cap).
    pub meter: String,
    /// Which of `limits.quotas` it counts against, if its meter has one.
    pub quota: Option<usize>,
    /// Units it uses.
    pub quantity: u64,
}

/// A metered request to check and count with its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRequest {
    /// Rate limits and the quotas the events count against (their `quantity` is ignored: the
    /// new events' quantities are what is counted).
    pub limits: LimitRequest,
    /// The events, each id once.
    pub events: Vec<EventCharge>,
    /// How long a counted event id is remembered, milliseconds; 0 = not remembered (ids made up
    /// by the server, e.g. `/v1/verify`'s, are never resent).
    pub dedup_ttl_ms: u64,
    /// The most distinct meters the org may use; 0 = no cap.
    pub max_meters: u32,
}

/// What [`super::Limiter::check_batch`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchDecision {
    /// Decided as a plain check; when allowed, only the new events were counted.
    Decided {
        /// The decision (quota states include only the new events).
        decision: Decision,
        /// Per event of the request: seen within the dedup window (so not counted again).
        duplicate: Vec<bool>,
    },
    /// The request would take the org past its meter cap; nothing counted.
    TooManyMeters {
        /// The cap.
        limit: u32,
    },
}

/// What an allowed batch spent, to give back.
#[derive(Debug, Clone, Copy)]
pub struct Refund<'a> {
    /// The request as checked.
    pub request: &'a BatchRequest,
    /// Per event: it was a duplicate (it spent nothing, and its id stays remembered).
    pub duplicate: &'a [bool],
}

impl Refund<'_> {
    /// The quota units to give back, per quota index of the request.
    pub fn quota_amounts(&self) -> Vec<u64> {
        let mut amounts = vec![0u64; self.request.limits.quotas.len()];
        for (event, duplicate) in self.request.events.iter().zip(self.duplicate) {
            if let (false, Some(index)) = (*duplicate, event.quota)
                && let Some(amount) = amounts.get_mut(index)
            {
                *amount = amount.saturating_add(event.quantity);
            }
        }
        amounts
    }

    /// The event ids to forget (the new ones, when ids are remembered at all).
    pub fn forgotten_ids(&self) -> impl Iterator<Item = &str> {
        let remembered = self.request.dedup_ttl_ms > 0;
        self.request
            .events
            .iter()
            .zip(self.duplicate)
            .filter(move |(_, duplicate)| remembered && !**duplicate)
            .map(|(event, _)| event.id.as_str())
    }

    /// Distinct meters of the request, in order.
    pub fn meters(request: &BatchRequest) -> Vec<&str> {
        let mut meters: Vec<&str> = request.events.iter().map(|e| e.meter.as_str()).collect();
        meters.sort_unstable();
        meters.dedup();
        meters
    }
}
