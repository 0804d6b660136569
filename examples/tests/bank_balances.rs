//! The balances projection over the bank: after a random run of commands (opens, deposits,
//! withdrawals, transfers as multi-stream appends, closes), every row of the read model equals
//! the state the repository loads from the account's events, and a rebuild gives the same rows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use factlog_aggregate::{Command, Repository};
use factlog_examples::bank::{Account, AccountCommand};
use factlog_examples::bank_balances::{Balances, TABLE};
use factlog_log::{EmbeddedStore, Options};
use factlog_projection::{ProjectionName, ProjectionOptions, Projections, SqliteSink};
use factlog_store::{EventStore, ReadAll};
use rand::{Rng, SeedableRng};

type Rows = BTreeMap<String, (String, i64, bool)>;

fn rows(path: &std::path::Path) -> Rows {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut statement = conn
        .prepare(&format!(
            "SELECT account_id, owner, balance, open FROM {TABLE}"
        ))
        .unwrap();
    statement
        .query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

async fn wait_caught_up(handle: &factlog_projection::ProjectionHandle, store: &EmbeddedStore) {
    let last = store.read_all(ReadAll::backward().limit(1)).await.unwrap()[0].position;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handle.status().position < last {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_balances_projection_equals_the_aggregates() {
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(EmbeddedStore::open(dir.path().join("events"), Options::default()).unwrap());
    let repository = Repository::<Account>::new(store.clone());
    let ids: Vec<String> = (0..12).map(|i| format!("acc{i}")).collect();
    for id in &ids {
        let open = AccountCommand::Open {
            account_id: id.clone(),
            owner: format!("owner of {id}"),
        };
        repository.execute(id, open).await.unwrap();
    }

    // The projection runs while the commands are executed.
    let sink = Arc::new(
        SqliteSink::open(dir.path().join("read-models.sqlite"))
            .await
            .unwrap(),
    );
    let projections = Projections::new();
    let mut options = ProjectionOptions::new(ProjectionName::new("balances").unwrap());
    options.batch_events_max = 7;
    let handle = projections
        .start(store.clone(), sink.clone(), Arc::new(Balances), options)
        .unwrap();

    for _ in 0..400 {
        let id = &ids[rng.gen_range(0..ids.len())];
        let amount = rng.gen_range(1..50);
        let outcome = match rng.gen_range(0..10) {
            0..=3 => repository
                .execute(
                    id,
                    AccountCommand::Deposit {
                        amount,
                        transfer_id: None,
                    },
                )
                .await
                .map(drop),
            4..=6 => repository
                .execute(
                    id,
                    AccountCommand::Withdraw {
                        amount,
                        transfer_id: None,
                    },
                )
                .await
                .map(drop),
            7..=8 => {
                let to = &ids[rng.gen_range(0..ids.len())];
                if to == id {
                    continue;
                }
                let transfer_id = Some(format!("t{}", rng.r#gen::<u32>()));
                let body = vec![
                    (
                        id.clone(),
                        AccountCommand::Withdraw {
                            amount,
                            transfer_id: transfer_id.clone(),
                        },
                    ),
                    (
                        to.clone(),
                        AccountCommand::Deposit {
                            amount,
                            transfer_id,
                        },
                    ),
                ];
                repository.execute_all(Command::new(body)).await.map(drop)
            }
            _ => repository
                .execute(id, AccountCommand::Close)
                .await
                .map(drop),
        };
        // Refusals (insufficient funds, closed accounts) are part of the run.
        let _ = outcome;
    }

    wait_caught_up(&handle, &store).await;
    let mut expected = Rows::new();
    for id in &ids {
        let account = repository.load(id).await.unwrap().state;
        expected.insert(
            id.clone(),
            (account.owner, account.balance as i64, account.open),
        );
    }
    let found = rows(sink.path());
    assert_eq!(found, expected, "seed {seed}");
    assert!(found.values().any(|(_, balance, _)| *balance > 0));

    // A rebuild from the log gives the same balances.
    handle.rebuild().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while handle.status().generation != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            handle.status()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rows(sink.path()), expected, "seed {seed}");
    projections.stop().await;
}
