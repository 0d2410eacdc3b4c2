//! The BBS's state as Prometheus gauges, appended to `/metrics`: cells
//! present, desired LRPs and instances, actual LRPs by state and presence,
//! tasks by state, whether this process holds the auctioneer lease, and
//! every instance's latest container metrics as its cell reported them.
//! Read at scrape time from the records, so they are never stale.

use std::fmt::Write as _;

use rusqlite::Connection;

use super::{Bbs, BbsError};
use crate::db::DbError;

/// Counts read from the BBS tables.
#[derive(Debug, Default, PartialEq)]
struct Counts {
    cells: i64,
    desired_lrps: i64,
    desired_instances: i64,
    actual: Vec<(String, String, i64)>,
    tasks: Vec<(String, i64)>,
}

fn grouped<T>(
    conn: &Connection,
    sql: &str,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>, DbError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn counts(conn: &Connection, now_millis: i64) -> Result<Counts, DbError> {
    let cells = conn.query_row(
        "SELECT COUNT(*) FROM bbs_cells WHERE expires_at > ?",
        [now_millis],
        |r| r.get(0),
    )?;
    let (desired_lrps, desired_instances) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(target_instances), 0) FROM bbs_desired_lrps \
         WHERE retiring = 0",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let actual = grouped(
        conn,
        "SELECT state, presence, COUNT(*) FROM bbs_actual_lrps \
         GROUP BY state, presence ORDER BY state, presence",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let tasks = grouped(
        conn,
        "SELECT state, COUNT(*) FROM bbs_tasks GROUP BY state ORDER BY state",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Counts {
        cells,
        desired_lrps,
        desired_instances,
        actual,
        tasks,
    })
}

/// A label value with `\`, `"` and newlines escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One number of an instance's metrics.
type Reading = fn(&diego::rep::ContainerMetrics) -> f64;

fn gauge(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

impl Bbs {
    /// The gauges in Prometheus' text format. Blocking (one read).
    pub fn render_gauges(&self) -> Result<String, BbsError> {
        let now = self.now().unix_millis();
        let c = self.db.read_blocking(|conn| counts(conn, now))?;
        let mut out = String::new();
        gauge(
            &mut out,
            "controller_bbs_cells_present",
            "Cells with a live presence.",
        );
        let _ = writeln!(out, "controller_bbs_cells_present {}", c.cells);
        gauge(
            &mut out,
            "controller_bbs_desired_lrps",
            "Desired LRPs (generations not retiring).",
        );
        let _ = writeln!(out, "controller_bbs_desired_lrps {}", c.desired_lrps);
        gauge(
            &mut out,
            "controller_bbs_desired_instances",
            "Instances those LRPs want.",
        );
        let _ = writeln!(
            out,
            "controller_bbs_desired_instances {}",
            c.desired_instances
        );
        gauge(
            &mut out,
            "controller_bbs_actual_lrps",
            "Actual LRP records by state and presence.",
        );
        for (state, presence, n) in &c.actual {
            let _ = writeln!(
                out,
                "controller_bbs_actual_lrps{{state=\"{}\",presence=\"{}\"}} {n}",
                label(state),
                label(presence)
            );
        }
        gauge(&mut out, "controller_bbs_tasks", "Tasks by state.");
        for (state, n) in &c.tasks {
            let _ = writeln!(
                out,
                "controller_bbs_tasks{{state=\"{}\"}} {n}",
                label(state)
            );
        }
        gauge(
            &mut out,
            "controller_bbs_leader",
            "1 when this process holds the auctioneer lease.",
        );
        let _ = writeln!(out, "controller_bbs_leader {}", u8::from(self.is_leader()));
        self.render_instances(&mut out);
        Ok(out)
    }

    fn render_instances(&self, out: &mut String) {
        let mut all = self.all_metrics();
        all.sort_by(|a, b| a.1.instance_guid.cmp(&b.1.instance_guid));
        let series: [(&str, &str, Reading); 5] = [
            (
                "controller_instance_cpu_fraction",
                "CPU used, in cores.",
                |m| m.cpu_fraction,
            ),
            ("controller_instance_memory_bytes", "Memory used.", |m| {
                m.memory_bytes as f64
            }),
            (
                "controller_instance_memory_limit_bytes",
                "Memory limit.",
                |m| m.memory_limit_bytes as f64,
            ),
            ("controller_instance_disk_bytes", "Disk used.", |m| {
                m.disk_bytes as f64
            }),
            ("controller_instance_disk_limit_bytes", "Disk limit.", |m| {
                m.disk_limit_bytes as f64
            }),
        ];
        for (name, help, value) in series {
            gauge(out, name, help);
            for (cell, m) in &all {
                let _ = writeln!(
                    out,
                    "{name}{{process_guid=\"{}\",index=\"{}\",instance_guid=\"{}\",cell_id=\"{}\"}} {}",
                    label(m.process_guid.as_deref().unwrap_or("")),
                    m.index.map(|i| i.to_string()).unwrap_or_default(),
                    label(&m.instance_guid),
                    label(cell),
                    value(m)
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_group_the_records() {
        let conn = Connection::open_in_memory().expect("db");
        conn.execute_batch(
            "CREATE TABLE bbs_cells (cell_id TEXT, presence TEXT, expires_at INTEGER);
             CREATE TABLE bbs_desired_lrps (process_guid TEXT, target_instances INTEGER, retiring INTEGER);
             CREATE TABLE bbs_actual_lrps (state TEXT, presence TEXT);
             CREATE TABLE bbs_tasks (state TEXT);
             INSERT INTO bbs_cells VALUES ('a', '{}', 2000), ('b', '{}', 500);
             INSERT INTO bbs_desired_lrps VALUES ('p-v1', 3, 1), ('p-v2', 3, 0), ('q-v1', 2, 0);
             INSERT INTO bbs_actual_lrps VALUES ('RUNNING', 'ORDINARY'), ('RUNNING', 'ORDINARY'),
               ('CRASHED', 'ORDINARY'), ('RUNNING', 'EVACUATING');
             INSERT INTO bbs_tasks VALUES ('PENDING'), ('RUNNING'), ('PENDING');",
        )
        .expect("schema");
        let c = counts(&conn, 1000).expect("counts");
        assert_eq!(
            c,
            Counts {
                cells: 1,
                desired_lrps: 2,
                desired_instances: 5,
                actual: vec![
                    ("CRASHED".into(), "ORDINARY".into(), 1),
                    ("RUNNING".into(), "EVACUATING".into(), 1),
                    ("RUNNING".into(), "ORDINARY".into(), 2),
                ],
                tasks: vec![("PENDING".into(), 2), ("RUNNING".into(), 1)],
            }
        );
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
