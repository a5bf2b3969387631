//! Trial reports between islands: spot checks, bounds, replays, and what sharing is worth.

use std::sync::Arc;

use doin_core::identity::{AccountId, Keypair};
use doin_core::params::DomainId;
use doin_core::plugin::{OptimizerSetup, PluginSetup};
use doin_core::trials::Trial;
use doin_plugins::quadratic::Quadratic;
use serde_json::{json, Value};

use super::*;
use crate::reports::MAX_REPORTED_RECORDS;

fn engine(seed: u64, config: Value, target: Option<f64>) -> Engine {
    let plugin =
        Arc::new(Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap());
    let setup = OptimizerSetup {
        seed,
        config,
        ..OptimizerSetup::default()
    };
    let stop = StopSettings::default().with_target_performance(target);
    Engine::new(plugin, setup, stop).unwrap()
}

fn gp() -> Value {
    json!({"optimizer": "ga", "meta_optimizer": "gp"})
}

fn reporter(n: u8) -> AccountId {
    Keypair::from_seed([n; 32]).account()
}

/// `rounds` trainings of an island seeded `seed`, as it would report them.
fn trials_of(seed: u64, rounds: usize) -> Vec<Trial> {
    let mut e = engine(seed, gp(), None);
    let mut trials = Vec::new();
    for _ in 0..rounds {
        e.step().unwrap();
        trials.extend(e.take_trials());
    }
    trials
}

fn ga_stats(e: &Engine) -> GaStats {
    e.stats().ga.unwrap()
}

#[test]
fn an_honest_report_passes_its_first_spot_check_and_feeds_the_surrogate() {
    let trials = trials_of(1, 5);
    assert_eq!(trials.len(), 5, "one trial per round");
    let mut island = engine(2, gp(), None);
    let outcome = island.observe_trials(&reporter(1), 1, &trials).unwrap();
    assert_eq!(
        outcome,
        TrialsOutcome::Adopted {
            records: 5,
            checked: true
        }
    );
    let stats = ga_stats(&island);
    assert_eq!((stats.reported_records, stats.records), (5, 5));
    assert_eq!(stats.spot_checks, 1);
}

#[test]
fn a_false_report_is_refuted_its_records_dropped_and_the_reporter_refused() {
    // The first report is always checked; later ones never (rate 0), so the lie in the
    // second report goes in, and is found by no check: that is what the rate buys.
    let config = json!({"optimizer": "ga", "meta_optimizer": "gp", "trial_spot_checks": 0.0});
    let mut island = engine(2, config, None);
    let honest = trials_of(1, 4);
    island
        .observe_trials(&reporter(1), 1, &honest[..2])
        .unwrap();
    let mut lie = honest[2..].to_vec();
    lie[0].performance += 5.0;
    let second = island.observe_trials(&reporter(1), 2, &lie).unwrap();
    assert!(matches!(
        second,
        TrialsOutcome::Adopted { checked: false, .. }
    ));
    assert_eq!(ga_stats(&island).reported_records, 4);

    // With checks always on, a reporter whose first report lies is refuted at once.
    let config = json!({"optimizer": "ga", "meta_optimizer": "gp", "trial_spot_checks": 1.0});
    let mut island = engine(2, config, None);
    island.observe_trials(&reporter(3), 1, &honest).unwrap();
    island
        .observe_trials(&reporter(1), 1, &honest[..2])
        .unwrap();
    assert_eq!(ga_stats(&island).reported_records, 6);
    // Whichever trial is drawn for the check, it lies.
    let mut lie = honest.clone();
    lie.iter_mut().for_each(|t| t.performance += 1.0);
    match island.observe_trials(&reporter(1), 2, &lie).unwrap() {
        TrialsOutcome::Refuted { reason } => assert!(reason.contains("retrained"), "{reason}"),
        other => panic!("not refuted: {other:?}"),
    }
    let stats = ga_stats(&island);
    assert_eq!(stats.reported_records, 4, "only reporter 3's records stay");
    assert_eq!(stats.refuted_reporters, 1);
    assert_eq!(
        island.observe_trials(&reporter(1), 3, &honest).unwrap(),
        TrialsOutcome::Refused
    );
}

#[test]
fn a_replayed_or_reordered_sequence_is_ignored() {
    let trials = trials_of(1, 3);
    let mut island = engine(2, gp(), None);
    island.observe_trials(&reporter(1), 10, &trials).unwrap();
    for sequence in [10, 9] {
        assert!(matches!(
            island
                .observe_trials(&reporter(1), sequence, &trials)
                .unwrap(),
            TrialsOutcome::Ignored { .. }
        ));
    }
    assert_eq!(ga_stats(&island).reported_records, 3);
}

#[test]
fn reports_never_take_more_than_half_the_surrogates_records() {
    let config = json!({"optimizer": "ga", "meta_optimizer": "gp", "trial_spot_checks": 0.0});
    let mut island = engine(2, config, None);
    let trials = trials_of(1, 8);
    for sequence in 1..=(MAX_REPORTED_RECORDS as u64 / 8 + 3) {
        island
            .observe_trials(&reporter(1), sequence, &trials)
            .unwrap();
    }
    assert_eq!(ga_stats(&island).reported_records, MAX_REPORTED_RECORDS);
}

#[test]
fn an_island_under_migration_none_neither_takes_nor_gives_trials() {
    let config = json!({"optimizer": "ga", "meta_optimizer": "gp", "migration": "none"});
    let mut island = engine(2, config, None);
    island.step().unwrap();
    assert!(island.take_trials().is_empty());
    let outcome = island
        .observe_trials(&reporter(1), 1, &trials_of(1, 2))
        .unwrap();
    assert!(matches!(outcome, TrialsOutcome::Ignored { .. }));
    assert_eq!(ga_stats(&island).reported_records, 0);
}

/// Rounds until the first of `n` islands reaches `target`, each island getting the others'
/// trainings after every round when `share`.
fn rounds_of_islands(n: u64, seed: u64, target: f64, share: bool) -> u64 {
    let mut islands: Vec<Engine> = (0..n)
        .map(|i| engine(seed * 100 + i, gp(), Some(target)))
        .collect();
    for round in 1..=200 {
        let mut reports = Vec::new();
        for (i, island) in islands.iter_mut().enumerate() {
            island.step().unwrap();
            if island.stats().best_performance.is_some_and(|b| b >= target) {
                return round;
            }
            reports.push((i, island.take_trials()));
        }
        if share {
            for (from, trials) in &reports {
                for (to, island) in islands.iter_mut().enumerate() {
                    if to != *from {
                        island
                            .observe_trials(&reporter(*from as u8), round, trials)
                            .unwrap();
                    }
                }
            }
        }
    }
    201
}

#[test]
fn four_islands_that_share_trials_reach_the_target_in_fewer_rounds() {
    let seeds = 1..=9u64;
    let median = |share: bool| {
        let mut rounds: Vec<u64> = seeds
            .clone()
            .map(|s| rounds_of_islands(4, s, -50.0, share))
            .collect();
        rounds.sort_unstable();
        rounds[rounds.len() / 2]
    };
    let (alone, shared) = (median(false), median(true));
    eprintln!("4 islands, median rounds to -50: {alone} alone, {shared} sharing trials");
    assert!(shared * 3 <= alone * 2, "sharing {shared} vs alone {alone}");
}
