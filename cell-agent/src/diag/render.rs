//! Human output of `diag`: aligned tables and `key: value` blocks.

use std::fmt::Write as _;
use std::time::SystemTime;

use super::{HostReport, SummaryReport};
use crate::rep::{ContainerDetail, ContainerList, ContainerSummary};

/// Columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &mut dyn Iterator<Item = &str>, out: &mut String| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut header.iter().copied(), &mut out);
    for row in rows {
        line(&mut row.iter().map(String::as_str), &mut out);
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

fn ago(t: Option<SystemTime>) -> String {
    match t.and_then(|t| SystemTime::now().duration_since(t).ok()) {
        Some(d) => format!("{}s ago", d.as_secs()),
        None => "never".into(),
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

pub(super) fn summary(r: &SummaryReport) -> String {
    let a = &r.agent;
    let mut out = String::new();
    let _ = writeln!(out, "cell        {} (zone {})", a.cell_id, a.zone);
    let _ = writeln!(out, "rep url     {}", a.rep_url);
    let _ = writeln!(out, "controller  {}", a.controller_url);
    let _ = writeln!(out, "stacks      {}", a.stacks.join(", "));
    let _ = writeln!(out, "uptime      {}s", a.uptime_secs);
    let p = &a.presence;
    let presence = match (&p.last_error, p.established) {
        (Some(e), _) => format!("FAILING ({e}); last ok {}", ago(p.last_ok)),
        (None, true) => format!("ok, refreshed {} (ttl {}s)", ago(p.last_ok), p.ttl_secs),
        (None, false) => "not yet established".into(),
    };
    let _ = writeln!(out, "presence    {presence}");
    let _ = writeln!(
        out,
        "evacuating  {}",
        if a.evacuating { "yes" } else { "no" }
    );
    let _ = writeln!(
        out,
        "reports     {} pending, {} dropped; {} recent crashes",
        a.reports_pending, a.reports_dropped, a.recent_crashes
    );
    out.push('\n');
    let rows = vec![
        vec![
            "memory MB".into(),
            a.total.memory_mb.to_string(),
            a.available.memory_mb.to_string(),
        ],
        vec![
            "disk MB".into(),
            a.total.disk_mb.to_string(),
            a.available.disk_mb.to_string(),
        ],
        vec![
            "containers".into(),
            a.total.containers.to_string(),
            a.available.containers.to_string(),
        ],
    ];
    out.push_str(&table(&["RESOURCE", "TOTAL", "AVAILABLE"], &rows));
    let states: Vec<String> = a
        .containers_by_state
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    let _ = writeln!(
        out,
        "\nallocations {} LRP instances, {} tasks ({})",
        a.lrps,
        a.tasks,
        if states.is_empty() {
            "none".into()
        } else {
            states.join(", ")
        }
    );
    let g = &r.garden;
    let garden = match (&g.error, &g.capacity) {
        (Some(e), _) => format!("UNREACHABLE at {}: {e}", g.socket),
        (None, Some(c)) => format!(
            "ok at {}; {} containers; capacity {} MB memory, {} MB disk, {} containers",
            g.socket,
            g.containers.unwrap_or(0),
            c.memory_in_bytes >> 20,
            c.schedulable_disk_in_bytes.max(c.disk_in_bytes) >> 20,
            c.max_containers
        ),
        (None, None) => format!("ok at {}", g.socket),
    };
    let _ = writeln!(out, "garden      {garden}");
    out
}

fn row(c: &ContainerSummary) -> Vec<String> {
    let m = c.metrics.as_ref();
    let owner = match c.index {
        Some(i) => format!("{}/{i}", c.owner),
        None => c.owner.clone(),
    };
    let health = match &c.health {
        Some(h) if h.healthy => format!("ok {}", ago(Some(h.at))),
        Some(h) => format!("FAIL {}: {}", ago(Some(h.at)), h.message),
        None => "-".into(),
    };
    let ports: Vec<String> = c
        .ports
        .iter()
        .map(|p| format!("{}:{}", p.host_port, p.container_port))
        .collect();
    vec![
        c.guid.clone(),
        c.state.clone(),
        c.lifecycle.clone(),
        owner,
        m.map_or("-".into(), |m| {
            format!("{}/{}", mb(m.memory_bytes), c.memory_mb)
        }),
        m.map_or("-".into(), |m| format!("{:.1}%", m.cpu_fraction * 100.0)),
        m.map_or("-".into(), |m| {
            format!("{}/{}", mb(m.disk_bytes), c.disk_mb)
        }),
        format!("{}s", c.uptime_secs),
        if ports.is_empty() {
            "-".into()
        } else {
            ports.join(",")
        },
        health,
    ]
}

const HEADER: [&str; 10] = [
    "GUID", "STATE", "KIND", "OWNER", "MEM MB", "CPU", "DISK MB", "UPTIME", "PORTS", "HEALTH",
];

pub(super) fn containers(list: &ContainerList) -> String {
    let rows: Vec<Vec<String>> = list.containers.iter().map(row).collect();
    let mut out = if rows.is_empty() {
        "no containers\n".to_owned()
    } else {
        table(&HEADER, &rows)
    };
    if !list.recent_crashes.is_empty() {
        out.push_str("\nrecent crashes:\n");
        let rows: Vec<Vec<String>> = list
            .recent_crashes
            .iter()
            .map(|k| {
                vec![
                    ago(Some(k.at)),
                    format!("{}/{}", k.process_guid, k.index),
                    k.instance_guid.clone(),
                    k.reason.clone(),
                ]
            })
            .collect();
        out.push_str(&table(&["WHEN", "LRP", "INSTANCE", "REASON"], &rows));
    }
    out
}

pub(super) fn container(d: &ContainerDetail) -> String {
    let mut out = table(&HEADER, &[row(&d.summary)]);
    let _ = writeln!(out, "\ntags:");
    for (k, v) in &d.tags {
        let _ = writeln!(out, "  {k} = {v}");
    }
    if let Some(r) = &d.result {
        let _ = writeln!(
            out,
            "result: failed={} stopped={} exit={:?} reason={:?}",
            r.failed, r.stopped, r.exit_status, r.failure_reason
        );
    }
    for k in &d.crashes {
        let _ = writeln!(out, "crash {}: {}", ago(Some(k.at)), k.reason);
    }
    let _ = writeln!(out, "\nrecent logs ({} lines):", d.recent_logs.len());
    for line in &d.recent_logs {
        let _ = writeln!(out, "  {line}");
    }
    out
}

pub(super) fn host(r: &HostReport) -> String {
    let seccomp = if r.seccomp_actions.is_empty() {
        yes(r.seccomp).to_owned()
    } else {
        format!("{} ({})", yes(r.seccomp), r.seccomp_actions.join(" "))
    };
    let garden = match &r.garden_error {
        None => "reachable".to_owned(),
        Some(e) => format!("UNREACHABLE: {e}"),
    };
    let rows = vec![
        vec!["kernel".into(), r.kernel.clone()],
        vec![
            "cgroup mode".into(),
            format!("{:?}", r.cgroup_mode).to_lowercase(),
        ],
        vec!["overlayfs".into(), yes(r.overlayfs).into()],
        vec![
            "user namespaces".into(),
            format!("{} (max {})", yes(r.user_namespaces), r.max_user_namespaces),
        ],
        vec!["seccomp".into(), seccomp],
        vec![
            "garden socket".into(),
            format!("{} {garden}", r.garden_socket),
        ],
    ];
    let mut out = table(&["CHECK", "RESULT"], &rows);
    let _ = writeln!(
        out,
        "\n{}",
        if r.ok {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONGER\nxyz  1\n");
    }
}
