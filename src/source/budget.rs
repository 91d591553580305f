//! A token bucket for read capacity, charged with what DynamoDB reports it consumed
//! (ReturnConsumedCapacity), so a scan stays within its share of the table's capacity whatever the
//! table's billing mode — on-demand tables report 0 provisioned throughput, so the budget cannot be
//! derived from the table and must be given.

use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct ReadBudget {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl ReadBudget {
    /// `rate` read units per second. The bucket starts empty, so even a short scan cannot burst.
    pub fn new(rate: f64) -> Self {
        assert!(rate > 0.0, "read budget must be positive");
        ReadBudget {
            rate,
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
        // At most one second of unused budget is kept.
        self.tokens = (self.tokens + earned).min(self.rate);
        self.last = now;
    }

    /// How long to wait before a request expected to cost `estimate` units.
    pub fn delay_for(&mut self, estimate: f64) -> Duration {
        self.refill();
        let needed = estimate.min(self.rate) - self.tokens;
        if needed <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(needed / self.rate)
        }
    }

    /// Waits until a request expected to cost `estimate` units fits the budget.
    pub async fn wait_for(&mut self, estimate: f64) {
        let delay = self.delay_for(estimate);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.refill();
    }

    /// Records what a request actually consumed (may leave the bucket in debt).
    pub fn charge(&mut self, units: f64) {
        self.refill();
        self.tokens -= units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn long_run_rate_stays_at_the_budget() {
        let mut budget = ReadBudget::new(10.0);
        let start = Instant::now();
        let mut consumed = 0.0;
        for i in 0..200 {
            let cost = if i % 3 == 0 { 4.0 } else { 1.5 };
            budget.wait_for(2.0).await;
            budget.charge(cost);
            consumed += cost;
        }
        let rate = consumed / start.elapsed().as_secs_f64();
        assert!(rate <= 10.0 * 1.05, "rate {rate}");
        assert!(rate >= 10.0 * 0.8, "rate {rate} wastes the budget");
    }

    #[tokio::test(start_paused = true)]
    async fn debt_is_paid_before_the_next_request() {
        let mut budget = ReadBudget::new(5.0);
        budget.wait_for(1.0).await;
        budget.charge(50.0);
        let d = budget.delay_for(1.0);
        assert!(d >= Duration::from_secs_f64(10.0), "{d:?}");
    }
}
