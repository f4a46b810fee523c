//! Which plan an org is on, read the same way by the metering hot path, the billing API and
//! the webhook: the stored subscription (or the default plan since the org's creation), its
//! plan from the store (or the configured catalog), plans cached briefly in memory.

use crate::config::PlanSeed;
use crate::domain::{Org, Plan, PlanId, Subscription};
use crate::store::{Store, StoreResult};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a plan read from the store is reused; plan edits act within this.
const PLAN_CACHE_TTL: Duration = Duration::from_secs(30);

/// Plans read from the store, with when they were read.
type PlanCache = Mutex<HashMap<PlanId, (Arc<Plan>, Instant)>>;

/// Plans and subscriptions as the rest of the system reads them. Cheap to clone.
#[derive(Clone)]
pub struct PlanBook {
    store: Arc<dyn Store>,
    catalog: Arc<Vec<Plan>>,
    default_plan: PlanId,
    cache: Arc<PlanCache>,
}

impl PlanBook {
    /// The book over `store`, with the configured plans as the catalog to bootstrap from and
    /// to fall back on.
    pub fn new(
        store: Arc<dyn Store>,
        seeds: &[PlanSeed],
        default_plan: PlanId,
        now: DateTime<Utc>,
    ) -> Self {
        let catalog = seeds
            .iter()
            .map(|seed| seed.terms.clone().into_plan(seed.id.clone(), None, now))
            .collect();
        Self {
            store,
            catalog: Arc::new(catalog),
            default_plan,
            cache: Arc::default(),
        }
    }

    /// Writes the configured plans that the store does not have yet (edits made through the
    /// API since are kept). Safe to run on every cold start, concurrently.
    pub async fn bootstrap(&self) -> StoreResult<()> {
        for plan in self.catalog.iter() {
            if self.store.insert_plan_if_missing(plan).await? {
                tracing::info!(plan_id = %plan.id, "plan bootstrapped from configuration");
            }
        }
        Ok(())
    }

    /// The plan every org is on until it subscribes.
    pub fn default_plan(&self) -> &PlanId {
        &self.default_plan
    }

    /// A plan by id: the store's (cached for a short while), else the configured one.
    pub async fn plan(&self, id: &PlanId) -> StoreResult<Option<Arc<Plan>>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(id)
            .filter(|(_, at)| at.elapsed() < PLAN_CACHE_TTL)
            .map(|(plan, _)| Arc::clone(plan));
        if let Some(plan) = cached {
            return Ok(Some(plan));
        }
        let found = self.fresh(id).await?.map(Arc::new);
        if let Some(plan) = &found {
            self.cache
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(id.clone(), (Arc::clone(plan), Instant::now()));
        }
        Ok(found)
    }

    /// Every plan, archived included, by id: the store's, and configured ones it lacks.
    pub async fn all(&self) -> StoreResult<Vec<Plan>> {
        let mut plans = self.store.plans().await?;
        for plan in self.catalog.iter() {
            if !plans.iter().any(|stored| stored.id == plan.id) {
                plans.push(plan.clone());
            }
        }
        plans.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(plans)
    }

    /// A plan by id, read fresh (for edits): the store's, else the configured one.
    pub async fn fresh(&self, id: &PlanId) -> StoreResult<Option<Plan>> {
        Ok(match self.store.plan(id).await? {
            Some(plan) => Some(plan),
            None => self.catalog.iter().find(|plan| plan.id == *id).cloned(),
        })
    }

    /// Drops a cached plan (after this process changed it).
    pub fn forget(&self, id: &PlanId) {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id);
    }

    /// The org's subscription as it stands at `now`: the stored one (a passed cancellation
    /// applied), else the default plan since the org was created.
    pub async fn subscription(&self, org: &Org, now: DateTime<Utc>) -> StoreResult<Subscription> {
        Ok(match self.store.subscription(&org.id).await? {
            Some(stored) => stored.resolved(&self.default_plan, now),
            None => Subscription::default_for(&org.id, &self.default_plan, org.created_at),
        })
    }

    /// The plan whose limits apply to the org at `now`.
    pub async fn current_plan(&self, org: &Org, now: DateTime<Utc>) -> StoreResult<Arc<Plan>> {
        let subscription = self.subscription(org, now).await?;
        self.plan_or_default(&subscription.plan_id).await
    }

    /// A plan, or the default plan when it has vanished: an org whose plan is missing gets the
    /// default plan's limits and prices rather than none at all.
    pub async fn plan_or_default(&self, id: &PlanId) -> StoreResult<Arc<Plan>> {
        if let Some(plan) = self.plan(id).await? {
            return Ok(plan);
        }
        tracing::error!(plan_id = %id, "plan is missing; using the default plan");
        self.plan(&self.default_plan).await?.ok_or_else(|| {
            crate::store::StoreError::Backend(anyhow::anyhow!("the default plan is not configured"))
        })
    }
}
