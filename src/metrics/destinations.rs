//! The destinations collector: the queue per destination (from the outbox's
//! `status` view: pending, oldest pending age, paused and why) and what its worker
//! reported (requests by outcome class, their durations, orders delivered and
//! rejected, the learned server clock offset).

use super::Snapshot;
use super::expo::Expo;
use super::registry::{DURATION_BUCKETS, OUTCOMES, Registry};

/// The pause reasons a label may take: a reason's words mapped onto a fixed set.
pub fn pause_class(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("sign") {
        "signature"
    } else if r.contains("shop") || r.contains("store") {
        "shop"
    } else if r.contains("enterprise") || r.contains("orgid") {
        "enterprise"
    } else if r.contains("permission") || r.contains("forbidden") || r.contains("not allowed") {
        "permission"
    } else if ["auth", "key", "secret", "token", "sid", "credential"]
        .iter()
        .any(|w| r.contains(w))
    {
        "auth"
    } else {
        "other"
    }
}

pub fn write(e: &mut Expo, s: &Snapshot, reg: &Registry) {
    let mut names: Vec<&str> = reg.dests.iter().map(|(n, _)| n.as_str()).collect();
    for d in &s.status.destinations {
        if !names.contains(&d.name.as_str()) {
            names.push(&d.name);
        }
    }
    let st = |n: &str| s.status.destinations.iter().find(|d| d.name == n);
    let name = "tillrelay_destination_pending_orders";
    e.family(name, "gauge", "Orders waiting to be delivered.");
    for n in &names {
        let v = st(n).map_or(0, |d| d.pending);
        e.sample(name, &[("destination", n)], v as f64);
    }
    let name = "tillrelay_destination_oldest_pending_age_seconds";
    e.family(
        name,
        "gauge",
        "Age of the oldest order waiting (0: none waiting).",
    );
    for n in &names {
        // A read served from the cache is that much older now.
        let v = st(n)
            .and_then(|d| d.oldest_pending_age)
            .map_or(0, |a| a + s.age.as_secs() as i64);
        e.sample(name, &[("destination", n)], v as f64);
    }
    let name = "tillrelay_destination_stored_orders";
    e.family(name, "gauge", "Orders in the queue by delivery state.");
    for n in &names {
        let d = st(n);
        for (state, v) in [
            ("pending", d.map_or(0, |d| d.pending)),
            ("delivered", d.map_or(0, |d| d.delivered)),
            ("rejected", d.map_or(0, |d| d.rejected)),
            // A damaged row set aside (issue #15): kept, shown, never blocking.
            ("quarantined", d.map_or(0, |d| d.quarantined)),
        ] {
            e.sample(name, &[("destination", n), ("state", state)], v as f64);
        }
    }
    let name = "tillrelay_destination_paused";
    e.family(
        name,
        "gauge",
        "1 while the destination is paused on a configuration fault; reason is auth, signature, shop, permission or other.",
    );
    for n in &names {
        match st(n).and_then(|d| d.paused.as_deref()) {
            Some(r) => e.sample(name, &[("destination", n), ("reason", pause_class(r))], 1.0),
            None => e.sample(name, &[("destination", n), ("reason", "")], 0.0),
        }
    }

    // The scope of a pause is what is wrong (issue #26): a source whose shop or
    // enterprise a destination refuses is paused there alone.
    let name = "tillrelay_source_paused";
    e.family(
        name,
        "gauge",
        "1 while a destination holds back one source's orders (its shop or enterprise is refused there; the other sources' flow); reason is shop, enterprise or other.",
    );
    for n in &names {
        let paused = st(n)
            .map(|d| d.paused_sources.as_slice())
            .unwrap_or_default();
        for src in &s.status.sources {
            match paused.iter().find(|p| p.source == src.name) {
                Some(p) => e.sample(
                    name,
                    &[
                        ("destination", n),
                        ("source", &p.source),
                        ("reason", pause_class(&p.reason)),
                    ],
                    1.0,
                ),
                None => e.sample(
                    name,
                    &[("destination", n), ("source", &src.name), ("reason", "")],
                    0.0,
                ),
            }
        }
        for p in paused
            .iter()
            .filter(|p| !s.status.sources.iter().any(|x| x.name == p.source))
        {
            e.sample(
                name,
                &[
                    ("destination", n),
                    ("source", &p.source),
                    ("reason", pause_class(&p.reason)),
                ],
                1.0,
            );
        }
    }

    let counts: Vec<_> = reg.dests.iter().map(|(n, m)| (n, m.counts())).collect();
    for (name, help, i) in [
        (
            "tillrelay_destination_delivered_total",
            "Orders delivered since the agent started.",
            0,
        ),
        (
            "tillrelay_destination_rejected_total",
            "Orders rejected for their own data since the agent started.",
            2,
        ),
    ] {
        e.family(name, "counter", help);
        for (n, c) in &counts {
            e.sample(name, &[("destination", n)], c.orders[i] as f64);
        }
    }
    let name = "tillrelay_destination_requests_total";
    e.family(
        name,
        "counter",
        "Requests answered, by outcome class (delivered, retry, rejected, misconfigured).",
    );
    for (n, c) in &counts {
        for (i, o) in OUTCOMES.iter().enumerate() {
            e.sample(
                name,
                &[("destination", n), ("outcome", o)],
                c.requests[i] as f64,
            );
        }
    }
    let name = "tillrelay_destination_request_duration_seconds";
    e.family(
        name,
        "histogram",
        "How long requests took, sending to answer.",
    );
    for (n, c) in &counts {
        for (i, le) in DURATION_BUCKETS.iter().enumerate() {
            let le = le.to_string();
            e.sample(
                &format!("{name}_bucket"),
                &[("destination", n), ("le", &le)],
                c.buckets[i] as f64,
            );
        }
        e.sample(
            &format!("{name}_bucket"),
            &[("destination", n), ("le", "+Inf")],
            c.buckets[10] as f64,
        );
        e.sample(
            &format!("{name}_sum"),
            &[("destination", n)],
            c.duration_secs,
        );
        e.sample(
            &format!("{name}_count"),
            &[("destination", n)],
            c.buckets[10] as f64,
        );
    }
    let name = "tillrelay_destination_server_clock_offset_seconds";
    e.family(
        name,
        "gauge",
        "The server's clock minus this box's, as learned from its answers.",
    );
    for (n, c) in &counts {
        e.sample(name, &[("destination", n)], c.offset_secs as f64);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn pause_reasons_map_onto_a_fixed_set() {
        use super::pause_class as c;
        assert_eq!(c("Ovopark 401: invalid sign"), "signature");
        assert_eq!(c("wdt: appkey unknown"), "auth");
        assert_eq!(c("shop 12 not found"), "shop");
        assert_eq!(c("403 Forbidden"), "permission");
        assert_eq!(c("something new"), "other");
    }
}
