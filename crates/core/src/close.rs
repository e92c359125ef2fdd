//! Close planning: in which order a period's usages are rated. A
//! customer's usages rate in master-data order, each seeing the charges of
//! the earlier ones as related charges (e.g. a fee as a percentage of the
//! other lines); usages of different customers do not depend on each other.
//! So the k-th usage of every customer rates in round k, in one batch per
//! rater ([`rate_in_rounds`]).

use crate::enrich::CanonicalUsage;
use crate::rating::{ChargeRecord, RelatedCharge};
use std::collections::HashMap;

/// One usage to rate: its rater (any key the caller can compare), its
/// customer and the usage.
pub struct Job<R> {
    pub rater: R,
    pub customer: String,
    pub usage: CanonicalUsage,
}

/// A rater's answer for a batch: record `i` for item `i`.
pub type Rated<E> = Vec<Result<ChargeRecord, E>>;

/// Rates every job round by round (see the module comment), calling `rate`
/// once per rater and round with the usages and their related charges;
/// returns each job's result, in the jobs' order, with the usage it rated.
pub fn rate_in_rounds<R: PartialEq, E>(
    jobs: Vec<Job<R>>,
    mut rate: impl FnMut(&R, Vec<(CanonicalUsage, Vec<RelatedCharge>)>) -> Rated<E>,
) -> Vec<(CanonicalUsage, Result<ChargeRecord, E>)> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        let k = seen.entry(job.customer.as_str()).or_default();
        if rounds.len() <= *k {
            rounds.push(Vec::new());
        }
        rounds[*k].push(i);
        *k += 1;
    }
    // The charges already rated for each customer, in master-data order.
    let mut related: HashMap<&str, Vec<RelatedCharge>> = HashMap::new();
    let mut results: Vec<Option<Result<ChargeRecord, E>>> = jobs.iter().map(|_| None).collect();
    for round in rounds {
        let mut by_rater: Vec<(&R, Vec<usize>)> = Vec::new();
        for &i in &round {
            match by_rater.iter_mut().find(|(r, _)| **r == jobs[i].rater) {
                Some((_, batch)) => batch.push(i),
                None => by_rater.push((&jobs[i].rater, vec![i])),
            }
        }
        let mut rated = Vec::with_capacity(round.len());
        for (rater, batch) in by_rater {
            let items = batch
                .iter()
                .map(|&i| (jobs[i].usage.clone(), related.get(jobs[i].customer.as_str()).cloned().unwrap_or_default()))
                .collect();
            let answers = rate(rater, items);
            assert_eq!(answers.len(), batch.len(), "a rater answers every usage");
            rated.extend(batch.into_iter().zip(answers));
        }
        for (i, result) in rated {
            if let Ok(record) = &result {
                related.entry(jobs[i].customer.as_str()).or_default().extend(RelatedCharge::of(record));
            }
            results[i] = Some(result);
        }
    }
    jobs.into_iter().zip(results).map(|(job, result)| (job.usage, result.expect("every job is in a round"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::{Charge, RuleRef, digest_input, rater_input, record};
    use rust_decimal::Decimal;

    fn usage(customer: &str, line: &str) -> CanonicalUsage {
        serde_json::from_value(serde_json::json!({
            "tenant": "t", "customer": customer, "customer_erp_account": "A", "legal_entity": "e",
            "erp_company": "1", "erp_target": "erp", "contract_line": line, "contract_line_version": 1,
            "sku": "S", "meter": "m", "currency": "EUR",
            "period": { "id": "2026-10", "start": "2026-10-01T00:00:00Z", "end": "2026-11-01T00:00:00Z", "timezone": "UTC" },
            "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z", "quantity": "1",
            "dimensions": {}, "params": {},
            "lineage": { "windows": [], "event_count": 0, "event_ids_digest": "", "transformation_version": 1 }
        }))
        .unwrap()
    }

    #[test]
    fn the_kth_usage_of_every_customer_rates_in_round_k_seeing_its_earlier_charges() {
        // Lines in master-data order; raters "a" and "b".
        let jobs = [("c1", "l1", "a"), ("c1", "l2", "b"), ("c2", "l3", "a"), ("c1", "l4", "a"), ("c2", "l5", "a")];
        let jobs =
            jobs.map(|(customer, line, rater)| Job { rater, customer: customer.into(), usage: usage(customer, line) });
        let mut calls: Vec<(&str, Vec<(String, usize)>)> = Vec::new();
        let rated = rate_in_rounds(jobs.into(), |rater, items| {
            calls.push((rater, items.iter().map(|(u, r)| (u.contract_line.clone(), r.len())).collect()));
            items
                .into_iter()
                .map(|(u, related)| {
                    let input = rater_input(&u, &related);
                    let charge = Charge {
                        sku: "S".into(),
                        description: u.contract_line.clone(),
                        quantity: Decimal::ONE,
                        unit_price: Decimal::ONE,
                        amount: Decimal::ONE,
                        explain: String::new(),
                    };
                    let rule = RuleRef { plugin: rater.to_string(), version: "1".into(), sha256: String::new() };
                    if u.contract_line == "l5" {
                        Err("refused")
                    } else {
                        Ok(record(u, related, digest_input(&input), vec![charge], rule, chrono::DateTime::UNIX_EPOCH))
                    }
                })
                .collect()
        });
        let line = |s: &str, n: usize| (s.to_string(), n);
        assert_eq!(
            calls,
            [
                ("a", vec![line("l1", 0), line("l3", 0)]),
                ("b", vec![line("l2", 1)]),
                ("a", vec![line("l5", 1)]),
                ("a", vec![line("l4", 2)]),
            ],
            "round 1: c1's and c2's first lines; round 2 by rater; round 3: c1's third"
        );
        let order: Vec<(&str, bool)> = rated.iter().map(|(u, r)| (u.contract_line.as_str(), r.is_ok())).collect();
        assert_eq!(
            order,
            [("l1", true), ("l2", true), ("l3", true), ("l4", true), ("l5", false)],
            "in the jobs' order"
        );
        let l4 = rated[3].1.as_ref().unwrap();
        assert_eq!(l4.related.iter().map(|r| r.contract_line.as_str()).collect::<Vec<_>>(), ["l1", "l2"]);
    }
}
