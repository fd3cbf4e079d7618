//! The Ovopark client of one destination: signed requests, clock learning, the
//! `getBusinessOrg` check, and the engine's contract (one order per request).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::*;
use crate::order::Order;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::upload::destination::Each;
use crate::upload::form::form_encode;
use crate::upload::http::Http;
use crate::upload::{Destination, OnlineCheck};
use crate::upload::{FirstFailures, Outcome, ServerOffset, local_unix, parse_ovopark_systime};

/// The Ovopark client of one destination. Blocking (ureq); call it from a blocking thread.
pub struct OvoparkClient {
    cfg: Ovopark,
    /// Each source's identity, resolved by the config (an `Err`: a disabled source's).
    routes: HashMap<String, Result<Route, String>>,
    http: Http,
    /// The learned server clock offset.
    offset: Arc<ServerOffset>,
    /// Since when each order has been refused with an unrecognised code.
    first_failures: FirstFailures,
}

impl std::fmt::Debug for OvoparkClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OvoparkClient")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl OvoparkClient {
    /// `routes`: each source's identity by source name, resolved by
    /// [`Ovopark::resolve`] (orders of other sources go with `[ovopark]`'s).
    pub fn new(
        cfg: Ovopark,
        routes: HashMap<String, Result<Route, String>>,
    ) -> Result<OvoparkClient, String> {
        let http = Http::new(&cfg.http, &cfg.url).map_err(|e| format!("ovopark: {e}"))?;
        Ok(OvoparkClient {
            cfg,
            routes,
            http,
            offset: Arc::new(ServerOffset::new()),
            first_failures: FirstFailures::default(),
        })
    }

    pub fn config(&self) -> &Ovopark {
        &self.cfg
    }

    /// Where an order of this source goes (configuration errors are `Err`).
    pub fn target_for(&self, order: &Order) -> Result<Target, String> {
        match order.source.as_deref().and_then(|s| self.routes.get(s)) {
            Some(Ok(route)) => route.target(order.shop.as_deref()),
            Some(Err(e)) => Err(e.clone()),
            None => self.cfg.target(None, order.shop.as_deref()),
        }
    }

    /// The form parameters of one sendOrder attempt at server time `now_unix`.
    pub fn params(&self, target: &Target, ipos: &str, now_unix: i64) -> BTreeMap<String, String> {
        let mut p = self.gateway_params(&self.cfg.method, "v2", now_unix);
        p.insert("orgId".into(), target.org_id.clone());
        p.insert("enterpriseId".into(), target.enterprise_id.clone());
        p.insert("iposJson".into(), ipos.to_string());
        p
    }

    fn gateway_params(&self, mt: &str, version: &str, now_unix: i64) -> BTreeMap<String, String> {
        let mut p = BTreeMap::new();
        p.insert("_aid".into(), self.cfg.aid.clone());
        p.insert("_akey".into(), self.cfg.akey.clone());
        p.insert("_mt".into(), mt.to_string());
        p.insert("_sm".into(), self.cfg.sign_method.as_str().to_string());
        p.insert("_requestMode".into(), "post".into());
        p.insert("_version".into(), version.to_string());
        p.insert("_format".into(), "json".into());
        // The vendor's newer gateway SDK signs a fresh `_nonce` into every request; it
        // keeps a quick resend of the same order (same second, same body) from being
        // taken for a replay (-100).
        p.insert("_nonce".into(), nonce());
        p.insert(
            "_timestamp".into(),
            format_timestamp(now_unix, self.cfg.zone_secs),
        );
        p
    }

    /// Signs and POSTs `params`; a timestamp refusal is answered by learning the server
    /// clock and sending once more with a fresh timestamp. Returns the classification and
    /// the reply body (empty when there was no reply).
    fn call(&self, make: &dyn Fn(i64) -> BTreeMap<String, String>) -> (Classified, Vec<u8>) {
        let mut last = None;
        for _ in 0..2 {
            let mut p = make(self.offset.now_unix());
            let sig = sign(&p, self.cfg.secret.expose(), self.cfg.sign_method);
            p.insert("_sig".into(), sig);
            let body = form_encode(&p);
            let reply = match self.http.post(&self.cfg.url, CONTENT_TYPE, body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("ovopark: {e}");
                    let c = Classified {
                        outcome: e.into_outcome(),
                        code: None,
                        timestamp_refused: false,
                        systime: None,
                        unrecognised: false,
                    };
                    return (c, Vec::new());
                }
            };
            let mut c = classify(&reply);
            // The reply's text is logged and stored: never with our secret in it.
            c.outcome = c.outcome.redacted(&[self.cfg.secret.expose()]);
            if let (Some("9"), Outcome::Misconfigured { reason }) = (c.code.as_deref(), &c.outcome)
            {
                // The method is "not registered" for this key: most often its
                // application lacks the API's permission; say which method.
                let mt = p.get("_mt").cloned().unwrap_or_default();
                let or_fix = if mt == self.cfg.method {
                    ", or fix ovopark.method"
                } else {
                    ""
                };
                // getBusinessOrg is documented on the gateway SDK's own route, not
                // necessarily on sendOrder's URL: a code 9 for it may only mean "not
                // served here", and says nothing of the pushes (issue #26, item 8).
                let route = if mt == GET_BUSINESS_ORG {
                    format!(
                        "; or {GET_BUSINESS_ORG} is not served at {} (its page documents it on the gateway's own route): the pushes ({}) are not concerned by this check",
                        self.cfg.url, self.cfg.method
                    )
                } else {
                    String::new()
                };
                c.outcome = Outcome::misconfigured(format!(
                    "permission: the key may not call method {mt} ({reason}): grant the key's application this API in the Ovopark open platform{or_fix}{route}"
                ));
            }
            // `stat.systime` is the gateway's own clock (the one that judges
            // `_timestamp`): when the reply has one, it alone is followed. The `Date`
            // header only when there is none: a front server's `Date` may disagree
            // with the gateway, and falling back to it whenever systime showed no
            // change made the offset alternate, one refused request per order
            // (issue #26, item 9).
            let systime = c
                .systime
                .as_deref()
                .and_then(|s| parse_ovopark_systime(s, self.cfg.zone_secs));
            let learned = match systime {
                Some(t) => self.offset.learn(t),
                None => self.offset.learn_from_reply(&reply),
            };
            if let Some(off) = learned {
                log::info!(
                    "ovopark: server clock differs from ours by {off} s; timestamps follow the server"
                );
            }
            if !c.timestamp_refused {
                return (c, reply.body);
            }
            last = Some((c, reply.body));
        }
        last.unwrap_or_else(|| {
            let c = Classified {
                outcome: Outcome::retry("timestamp refused"),
                code: None,
                timestamp_refused: true,
                systime: None,
                unrecognised: false,
            };
            (c, Vec::new())
        })
    }

    /// Delivers one stamped order; never panics, never blocks past the timeouts.
    pub fn send(&self, order: &Order) -> Outcome {
        self.send_one(order).0
    }

    /// [`OvoparkClient::send`], and whether the outcome stops the batch (see
    /// [`stops_the_batch`]): a code nobody recognises is this order's alone, retried
    /// until `give_up_after` has passed since its first refusal, then rejected.
    fn send_one(&self, order: &Order) -> (Outcome, bool) {
        let outcome = self.attempt(order);
        let (outcome, alone) = match outcome {
            (Outcome::Retry { reason, .. }, true) => {
                let limit = self.cfg.give_up_after;
                let refused_for = self.first_failures.refused(&order.order_no, local_unix());
                if refused_for >= limit {
                    self.first_failures.clear(&order.order_no);
                    let r = format!(
                        "order {}: refused for {} (ovopark.give_up_after): {reason}",
                        order.order_no,
                        humantime::format_duration(limit)
                    );
                    (Outcome::rejected(r), true)
                } else {
                    let r = format!(
                        "order {}: {reason} (only this order waits; rejected after {} of refusals)",
                        order.order_no,
                        humantime::format_duration(limit)
                    );
                    (Outcome::retry(r), true)
                }
            }
            (o, alone) => {
                self.first_failures.clear(&order.order_no);
                (o, alone)
            }
        };
        let stop = !alone && stops_the_batch(&outcome);
        (outcome, stop)
    }

    /// One attempt; `true` with an outcome about this order alone (an unrecognised code).
    fn attempt(&self, order: &Order) -> (Outcome, bool) {
        let target = match self.target_for(order) {
            Ok(t) => t,
            Err(e) => return (Outcome::misconfigured(e), false),
        };
        let ipos = match build_ipos(order, &target, self.cfg.order_type(order.kind)) {
            Ok(i) => i,
            Err(reason) => {
                let r = format!("order {}: {reason}", order.order_no);
                return (Outcome::rejected(r), true);
            }
        };
        for w in &ipos.warnings {
            log::warn!("ovopark: {w}");
        }
        let (mut c, _) = self.call(&|now| self.params(&target, &ipos.json, now));
        // 206004 names the shopId. Usually the source's (its `shop`, or the config's
        // shop_id): the source pauses. An export may carry each order's own shop,
        // though: then the unknown shop is that order's data, and only it is refused.
        if let (Some("206004"), Outcome::SourceMisconfigured { reason }) =
            (c.code.as_deref(), &c.outcome)
        {
            let own = order
                .source
                .as_deref()
                .and_then(|s| self.routes.get(s))
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|r| r.shop_is_the_orders(order.shop.as_deref()));
            if own {
                c.outcome = Outcome::rejected(format!(
                    "order {}: {reason}: shopId {} is this order's own shop (not its source's): fix the order's shop, then `tillrelay retry`",
                    order.order_no,
                    order.shop.as_deref().unwrap_or_default()
                ));
            }
        }
        match &c.outcome {
            Outcome::Delivered { .. } => {}
            o => log::debug!(
                "ovopark: order {}: {}: {}",
                order.order_no,
                o.kind(),
                o.text()
            ),
        }
        (c.outcome, c.unrecognised)
    }

    /// `check-config --online`, summed up (see [`OvoparkClient::online_checks`]).
    pub fn check_online(&self) -> Result<String, String> {
        crate::upload::summarize(&self.online_checks())
    }

    /// `check-config --online`: harmless `getBusinessOrg` calls (one per orgId) that
    /// show whether the key works (the first line) and may act for each source's
    /// enterprise (a line per source; `[ovopark]`'s own when no source is known).
    pub fn online_checks(&self) -> Vec<OnlineCheck> {
        let mut subjects: Vec<(Option<String>, Result<OrgPair, String>)> = Vec::new();
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        for name in names {
            let pair = self.routes[name]
                .as_ref()
                .map(|r| (r.org_id.clone(), r.enterprise_id.clone()))
                .map_err(Clone::clone);
            subjects.push((Some(name.clone()), pair));
        }
        if subjects.is_empty() {
            if let (Some(o), Some(e)) =
                (&self.cfg.defaults.org_id, &self.cfg.defaults.enterprise_id)
            {
                subjects.push((None, Ok((o.clone(), e.clone()))));
            }
        }
        if subjects.is_empty() {
            return vec![OnlineCheck::account(Err(
                "ovopark: no org_id/enterprise_id configured".into(),
            ))];
        }
        let mut listings: HashMap<String, Result<Vec<Listed>, String>> = HashMap::new();
        let mut out = Vec::new();
        for (source, pair) in subjects {
            let (org, ent) = match pair {
                Ok(p) => p,
                Err(e) => {
                    // Only a disabled source's identity can be unresolved (an enabled
                    // one's fails the config): its leftover orders wait.
                    out.push(OnlineCheck {
                        source,
                        result: Ok(format!("not checked (a disabled source: {e})")),
                    });
                    continue;
                }
            };
            if !listings.contains_key(&org) {
                let listed = self.business_orgs(&org);
                if listings.is_empty() {
                    // The first call tells whether the key works at all.
                    if let Err(e) = listed {
                        return vec![OnlineCheck::account(Err(e))];
                    }
                }
                listings.insert(org.clone(), listed);
            }
            let result = match &listings[&org] {
                Err(e) => Err(e.clone()),
                Ok(listed) => judge_org(listed, &org, &ent),
            };
            out.push(OnlineCheck { source, result });
        }
        out.insert(
            0,
            OnlineCheck::account(Ok(format!(
                "ovopark: key accepted (clock offset {} s)",
                self.offset.offset()
            ))),
        );
        out
    }

    /// The `(orgId, enterpriseId)` pairs `getBusinessOrg` lists for `org`, or the
    /// plain problem of the call.
    fn business_orgs(&self, org: &str) -> Result<Vec<Listed>, String> {
        let (c, body) = self.call(&|now| {
            let mut p = self.gateway_params(GET_BUSINESS_ORG, "v1", now);
            p.insert("orgid".into(), org.to_string());
            p.insert("pageNumber".into(), "1".into());
            p.insert("pageSize".into(), "100".into());
            p
        });
        match c.outcome {
            Outcome::Delivered { .. } => {}
            Outcome::Misconfigured { reason } if c.code.as_deref() == Some("9") => {
                return Err(format!("ovopark: {reason}"));
            }
            Outcome::Misconfigured { reason } => {
                return Err(format!(
                    "ovopark: the key or signature is refused: {reason}"
                ));
            }
            other => {
                return Err(format!("ovopark: unreachable or failing: {}", other.text()));
            }
        }
        let data = serde_json::from_slice::<serde_json::Value>(&body)
            .map(|v| v["data"].clone())
            .unwrap_or_default();
        let mut listed = Vec::new();
        collect_orgs(&data, &mut listed);
        Ok(listed)
    }
}

/// A source's `(orgId, enterpriseId)`.
type OrgPair = (String, String);
/// An `(orgId, enterpriseId)` that `getBusinessOrg` lists (the enterprise may be absent).
type Listed = (String, Option<String>);

/// Whether `getBusinessOrg`'s `listed` pairs let the key act for `org`/`ent`.
fn judge_org(listed: &[Listed], org: &str, ent: &str) -> Result<String, String> {
    if listed.is_empty() {
        Ok(format!(
            "orgId {org}/enterpriseId {ent} (getBusinessOrg listed no enterprise to compare)"
        ))
    } else if listed
        .iter()
        .any(|(o, e)| o == org && e.as_ref().is_none_or(|e| e == ent))
    {
        Ok(format!("may act for orgId {org}/enterpriseId {ent}"))
    } else if listed.iter().any(|(o, _)| o == org) {
        Err(format!(
            "orgId {org} is listed with another enterpriseId than {ent}: fix enterprise_id"
        ))
    } else {
        let names: Vec<String> = listed.iter().map(|(o, _)| o.clone()).collect();
        Err(format!(
            "the key may not act for orgId {org} (agent permission): getBusinessOrg lists orgIds {}",
            names.join(", ")
        ))
    }
}

/// Collects `(orgId, enterpriseId)` from any objects in a getBusinessOrg answer (the
/// spec does not give its shape, so look for the ids wherever they are).
fn collect_orgs(v: &serde_json::Value, out: &mut Vec<(String, Option<String>)>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_orgs(i, out)),
        serde_json::Value::Object(m) => {
            let org = ["orgId", "orgid", "org_id"]
                .iter()
                .find_map(|k| m.get(*k).and_then(code_text));
            if let Some(org) = org {
                let ent = ["enterpriseId", "enterpriseid", "enterprise_id"]
                    .iter()
                    .find_map(|k| m.get(*k).and_then(code_text));
                out.push((org, ent));
            }
            m.values().for_each(|i| collect_orgs(i, out));
        }
        _ => {}
    }
}

/// An outcome not about the order alone: a misconfiguration or a transient fault would
/// hit the rest of the batch the same way, each after its own timeout.
fn stops_the_batch(r: &Outcome) -> bool {
    matches!(r, Outcome::Misconfigured { .. } | Outcome::Retry { .. })
}

/// One order per request; up to `concurrency` requests in flight, the pass's first
/// alone. No new request starts after an outcome that is not about the order alone
/// (see [`stops_the_batch`]).
impl Destination for OvoparkClient {
    fn name(&self) -> &'static str {
        "ovopark"
    }

    /// A few orders per sender.
    fn batch_limit(&self) -> usize {
        (self.cfg.concurrency * 10).max(20)
    }

    fn send(&self, orders: &[&Order], tick: &dyn Fn(), each: &mut Each<'_>) {
        if self.cfg.concurrency <= 1 || orders.len() <= 1 {
            for (i, order) in orders.iter().enumerate() {
                tick();
                let (r, stop) = self.send_one(order);
                if each(i, r, true).is_break() || stop {
                    return;
                }
            }
            return;
        }
        // The pass's first request goes alone: if the box's clock is off, it is the
        // one refused (code 16) and the client learns the server's clock from it,
        // instead of `concurrency` requests all refused at once.
        tick();
        let (first, stop) = self.send_one(orders[0]);
        if each(0, first, true).is_break() || stop {
            return;
        }
        // Then up to `concurrency` requests in flight, each outcome handed to `each` on
        // this thread as it arrives. A sender starts its next request only once its
        // previous outcome was handed over (and so recorded: `each` persists it), so
        // at any moment at most `concurrency` requests are sent and not recorded —
        // what a kill re-sends. (Without the wait, senders went on while this thread
        // committed, and a slow fsync let a whole batch pile up answered and not
        // recorded: 25 resends in one kill.) After an outcome that stops the batch, no
        // new request starts; the ones in flight are still handed over.
        let next = AtomicUsize::new(1);
        let stop = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Outcome, mpsc::SyncSender<()>)>();
        let senders = self.cfg.concurrency.min(orders.len() - 1);
        std::thread::scope(|scope| {
            for _ in 0..senders {
                let tx = tx.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    let (recorded_tx, recorded) = mpsc::sync_channel::<()>(1);
                    while !stop.load(Ordering::SeqCst) {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(order) = orders.get(i) else { break };
                        let (r, stops) = self.send_one(order);
                        if stops {
                            stop.store(true, Ordering::SeqCst);
                        }
                        if tx.send((i, r, recorded_tx.clone())).is_err() {
                            break;
                        }
                        // Err: the receiver is gone (the pass stopped).
                        if recorded.recv().is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (i, r, recorded) in rx {
                tick();
                if each(i, r, true).is_break() {
                    // Dropping the receiver (and the acknowledgements) ends the
                    // senders after their request in flight.
                    stop.store(true, Ordering::SeqCst);
                    return;
                }
                let _ = recorded.send(());
            }
        })
    }

    fn server_offset(&self) -> &Arc<ServerOffset> {
        &self.offset
    }

    fn online_checks(&self) -> Vec<OnlineCheck> {
        OvoparkClient::online_checks(self)
    }
}
