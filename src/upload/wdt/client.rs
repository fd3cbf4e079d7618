//! The Wangdiantong client of one destination: batching, signed requests, clock
//! learning, and the engine's contract (batches of distinct tids).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::*;
use crate::order::Order;
use std::sync::mpsc;

use super::confirm::entry_trade;
use crate::upload::destination::Each;
use crate::upload::form::percent_encode;
use crate::upload::http::Http;
use crate::upload::{Destination, OnlineCheck};
use crate::upload::{Outcome, ServerOffset, local_unix};

/// The Wangdiantong client of one destination. Blocking (ureq).
pub struct WdtClient {
    cfg: Wdt,
    /// Each source's shop, resolved by the config (an `Err`: a disabled source's).
    routes: HashMap<String, Result<ShopTarget, String>>,
    pub(super) http: Http,
    /// The learned server clock offset.
    pub(super) offset: Arc<ServerOffset>,
    /// Since when each lone trade has been refused (see [`FirstFailures`]).
    first_failures: FirstFailures,
}

/// What the requests of one `send_batch` share: each trade's time as unix seconds.
#[derive(Debug, Default)]
struct Ctx {
    trade_unix: HashMap<String, i64>,
}

impl std::fmt::Debug for WdtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WdtClient")
            .field("url", &self.cfg.url)
            .finish()
    }
}

impl WdtClient {
    /// `routes`: each source's shop by source name, resolved by [`Wdt::resolve`]
    /// (orders of other sources go with `[wdt]`'s).
    pub fn new(
        cfg: Wdt,
        routes: HashMap<String, Result<ShopTarget, String>>,
    ) -> Result<WdtClient, String> {
        let http = Http::new(&cfg.http, &cfg.url).map_err(|e| format!("wdt: {e}"))?;
        Ok(WdtClient {
            cfg,
            routes,
            http,
            offset: Arc::new(ServerOffset::new()),
            first_failures: FirstFailures::default(),
        })
    }

    pub fn config(&self) -> &Wdt {
        &self.cfg
    }

    /// How many orders one [`WdtClient::send_batch`] call sends per request.
    pub fn batch_size(&self) -> usize {
        self.cfg.batch_size
    }

    /// Batches in flight at once.
    pub fn concurrency(&self) -> usize {
        self.cfg.concurrency
    }

    /// Builds the trade of one order (what `send_batch` would send).
    pub fn build(&self, order: &Order) -> Result<BuiltTrade, Outcome> {
        let fallback;
        let shop = match order.source.as_deref().and_then(|s| self.routes.get(s)) {
            Some(Ok(shop)) => shop,
            Some(Err(e)) => return Err(Outcome::misconfigured(e.clone())),
            None => {
                fallback = self.cfg.target(None).map_err(Outcome::misconfigured)?;
                &fallback
            }
        };
        build_trade(order, shop, &self.cfg)
            .map_err(|r| Outcome::rejected(format!("order {}: {r}", order.order_no)))
    }

    /// The signed URL (query) for `method` and `body` at server time `now_unix`.
    pub fn signed_url(&self, method: &str, body: &str, now_unix: i64) -> String {
        self.signed_url_with(method, body, now_unix, &[])
    }

    /// [`WdtClient::signed_url`] with more query parameters (a query's pager), signed
    /// like the rest.
    pub fn signed_url_with(
        &self,
        method: &str,
        body: &str,
        now_unix: i64,
        extra: &[(&str, &str)],
    ) -> String {
        let mut p = BTreeMap::new();
        for (k, v) in extra {
            p.insert(k.to_string(), v.to_string());
        }
        p.insert("sid".to_string(), self.cfg.sid.clone());
        p.insert("key".to_string(), self.cfg.key.clone());
        p.insert("salt".to_string(), self.cfg.salt.expose().to_string());
        p.insert("method".to_string(), method.to_string());
        p.insert("v".to_string(), "1.0".to_string());
        p.insert("timestamp".to_string(), timestamp(now_unix).to_string());
        p.insert("body".to_string(), body.to_string());
        let sign = sign(&p, self.cfg.secret.expose());
        p.remove("body");
        let mut url = self.cfg.url.clone();
        url.push('?');
        for (k, v) in &p {
            url.push_str(k);
            url.push('=');
            url.push_str(&percent_encode(v));
            url.push('&');
        }
        url.push_str("sign=");
        url.push_str(&sign);
        url
    }

    /// POSTs one call; a timestamp refusal is answered by learning the server clock from
    /// `Date` and sending once more.
    fn call(&self, method: &str, body: &str) -> Classified {
        self.call_paged(method, body, &[]).0
    }

    /// [`WdtClient::call`] with a pager (signed), also returning the reply's body
    /// (empty when there was no reply). A key without the method's permission
    /// (`权限不足`) is named as such, with the method.
    fn call_paged(
        &self,
        method: &str,
        body: &str,
        pager: &[(&str, &str)],
    ) -> (Classified, Vec<u8>) {
        let mut last = None;
        for _ in 0..2 {
            let url = self.signed_url_with(method, body, self.offset.now_unix(), pager);
            let reply = match self.http.post(&url, CONTENT_TYPE, body.as_bytes()) {
                Ok(r) => r,
                Err(e) => {
                    log::warn!("wdt: {e}");
                    return (Classified::All(e.into_outcome()), Vec::new());
                }
            };
            if let Some(off) = self.offset.learn_from_reply(&reply) {
                log::info!(
                    "wdt: server clock differs from ours by {off} s; timestamps follow the server"
                );
            }
            // The reply's text is logged and stored: never with our secret or salt in it.
            let secrets = [self.cfg.secret.expose(), self.cfg.salt.expose()];
            match classify_with(&reply, self.cfg.rate_limit_wait_secs).redacted(&secrets) {
                Classified::TimestampRefused(what) => last = Some(what),
                Classified::All(Outcome::Misconfigured { reason })
                    if reason.contains(PERMISSION_MESSAGE) =>
                {
                    let reason = format!(
                        "permission {PERMISSION_MESSAGE} for method {method}: {reason} (the key (appkey) lacks it: grant it in the Wangdiantong open platform, 自助对接 → 应用管理, or the ERP's employee rights of the key)"
                    );
                    return (Classified::All(Outcome::misconfigured(reason)), reply.body);
                }
                c => return (c, reply.body),
            }
        }
        let c = Classified::All(Outcome::retry(format!(
            "{} (timestamp refused twice: clock skew)",
            last.unwrap_or_default()
        )));
        (c, Vec::new())
    }

    /// Sends one request of trades and maps the reply onto them. A refusal of the
    /// whole call that is about one trade is isolated: the trade it names is set
    /// aside and the rest sent again at once; a message naming none splits the
    /// batch in halves until the trade is alone (about 2·log2(n) more requests for
    /// one bad trade among n). Known transient and configuration faults stay the
    /// batch's.
    fn send_chunk(&self, chunk: &[&BuiltTrade], ctx: &Ctx, out: &mut HashMap<String, Outcome>) {
        let Some(first) = chunk.first() else { return };
        let body = build_body(&first.shop_no, chunk);
        let sent_at = self.offset.now_unix();
        let reply = self.call(self.cfg.method.method(), &body);
        // A crash after the cloud answered, before the outcome is kept (tests).
        crate::failpoint::hit("wdt.after_push");
        match reply {
            Classified::Accepted {
                failed,
                new_count,
                chg_count,
            } => {
                let counts = (new_count, chg_count, sent_at);
                self.accepted(chunk, ctx, &failed, counts, out)
            }
            Classified::DataError(what) | Classified::Unrecognised(what) if chunk.len() > 1 => {
                if let Some(tid) = named_tid(&what, chunk.iter().map(|t| t.tid.as_str())) {
                    log::info!(
                        "wdt: a batch of {} was refused for trade {tid} ({what}); sending the others without it",
                        chunk.len()
                    );
                    let (named, rest): (Vec<&BuiltTrade>, Vec<&BuiltTrade>) =
                        chunk.iter().partition(|t| t.tid == tid);
                    for t in named {
                        let o = self.lone_refusal(t, ctx, &what);
                        out.insert(t.tid.clone(), o);
                    }
                    self.send_chunk(&rest, ctx, out);
                } else {
                    log::info!(
                        "wdt: a batch of {} was refused ({what}); splitting it to find the trade",
                        chunk.len()
                    );
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    self.send_chunk(a, ctx, out);
                    self.send_chunk(b, ctx, out);
                }
            }
            Classified::DataError(what) | Classified::Unrecognised(what) => {
                let o = self.lone_refusal(first, ctx, &what);
                out.insert(first.tid.clone(), o);
            }
            Classified::TimestampRefused(what) => {
                for t in chunk {
                    out.insert(t.tid.clone(), Outcome::retry(what.clone()));
                }
            }
            Classified::All(o) => {
                for t in chunk {
                    out.insert(t.tid.clone(), o.clone());
                }
            }
        }
    }

    /// A status-0 answer mapped onto the trades of `chunk`. Each `error_list` entry is
    /// matched to its trade (by `no`, or any id it carries equal to a tid or one of
    /// its lines' oids, or a tid its text names) and its free text classified like a
    /// whole call's message (pushSelf2 page: `error` is free text). What does not add
    /// up — an entry that names no trade of the batch, or `new_count + chg_count`
    /// other than the trades not named — is confirmed by `searchSelfOrder`, trade by
    /// trade: a trade the ERP holds is delivered, one it does not is sent again,
    /// never assumed delivered (issue #26).
    fn accepted(
        &self,
        chunk: &[&BuiltTrade],
        ctx: &Ctx,
        failed: &[ErrorEntry],
        (new_count, chg_count, sent_at): (i64, i64, i64),
        out: &mut HashMap<String, Outcome>,
    ) {
        let mut refused: HashMap<&str, &str> = HashMap::new();
        let mut unmatched: Vec<&str> = Vec::new();
        for e in failed {
            match entry_trade(e, chunk) {
                Some(tid) => {
                    refused.entry(tid).or_insert(e.error.as_str());
                }
                None => unmatched.push(e.error.as_str()),
            }
        }
        let stored = chunk.len() - refused.len();
        let counted = new_count.saturating_add(chg_count);
        let doubt = if !unmatched.is_empty() {
            Some(format!(
                "an error_list entry names no trade of the batch: {}",
                unmatched.join(" | ")
            ))
        } else if counted != stored as i64 {
            Some(format!(
                "new_count {new_count} + chg_count {chg_count} ≠ {stored} trade(s) not in error_list"
            ))
        } else {
            None
        };
        // One query lists what the push just modified in the shop; a trade it does
        // not list (an unchanged re-push may keep its old modification time) is
        // asked for by tid.
        let recent = doubt.as_ref().and_then(|d| {
            log::warn!(
                "wdt: the answer to a batch of {} does not add up ({d}); confirming each trade with {SEARCH_SELF_ORDER}",
                chunk.len()
            );
            chunk
                .first()
                .and_then(|t| self.modified_since(&t.shop_no, sent_at))
        });
        for t in chunk {
            let outcome = match (refused.get(t.tid.as_str()), &doubt) {
                (Some(err), _) => self.entry_refusal(t, ctx, err),
                (None, None) => Outcome::Delivered {
                    note: format!(
                        "accepted (batch of {}: {new_count} new, {chg_count} updated)",
                        chunk.len()
                    ),
                },
                (None, Some(d)) => match recent
                    .as_ref()
                    .filter(|r| r.contains(&t.tid))
                    .map(|_| true)
                    .or_else(|| self.holds(t))
                {
                    Some(true) => Outcome::Delivered {
                        note: format!(
                            "held by the ERP (confirmed by {SEARCH_SELF_ORDER}: the answer did not add up: {d})"
                        ),
                    },
                    Some(false) => self.give_up_or_retry(
                        t,
                        &format!(
                            "not found by {SEARCH_SELF_ORDER} after an answer that did not add up ({d})"
                        ),
                    ),
                    None => Outcome::retry(format!(
                        "Wangdiantong trade {}: the answer did not add up ({d}) and {SEARCH_SELF_ORDER} could not confirm it: sent again",
                        t.tid
                    )),
                },
            };
            out.insert(t.tid.clone(), outcome);
        }
    }

    /// The outcome of a trade an `error_list` entry names: its free text classified
    /// like a whole call's message (a passing fault is retried, a shop pauses its
    /// sources, the key the destination), only the trade's own data rejects it.
    fn entry_refusal(&self, t: &BuiltTrade, ctx: &Ctx, err: &str) -> Outcome {
        let what = format!("Wangdiantong error_list for trade {}: {err}", t.tid);
        match shared_outcome(message_class(err), &what, self.cfg.rate_limit_wait_secs) {
            Some(o) => o,
            None => self.lone_refusal(t, ctx, err),
        }
    }

    /// The outcome of one trade refused alone. A known data fault rejects it; a trade
    /// time ahead of the server waits for the server's clock; a message nobody
    /// recognises may be the server's fault, so the trade is retried (the engine's
    /// capped backoff) until `give_up_after` has passed since its first refusal, and
    /// only then rejected (kept, shown, re-sendable with `retry`).
    fn lone_refusal(&self, t: &BuiltTrade, ctx: &Ctx, what: &str) -> Outcome {
        match message_class(what) {
            MessageClass::TradeAhead => return self.trade_ahead(t, ctx, what),
            MessageClass::Data => {
                return Outcome::rejected(format!("Wangdiantong refused trade {}: {what}", t.tid));
            }
            _ => {}
        }
        // A re-push (after a crash or a lost reply) of a trade the ERP already holds
        // may be refused as such: it is delivered, not refused.
        if self.holds(t) == Some(true) {
            return Outcome::Delivered {
                note: format!(
                    "held by the ERP (confirmed by {SEARCH_SELF_ORDER} after the push was refused: {what})"
                ),
            };
        }
        self.give_up_or_retry(t, what)
    }

    /// A trade refused (or not found) for a reason nobody recognises: retried until
    /// `give_up_after` has passed since the first time, then rejected.
    fn give_up_or_retry(&self, t: &BuiltTrade, what: &str) -> Outcome {
        let refused_for = self.first_failures.refused(&t.tid, local_unix());
        let limit = self.cfg.give_up_after;
        if refused_for >= limit {
            self.first_failures.clear(&t.tid);
            return Outcome::rejected(format!(
                "Wangdiantong refused trade {} for {} (wdt.give_up_after): {what}",
                t.tid,
                humantime::format_duration(limit)
            ));
        }
        Outcome::retry(format!(
            "Wangdiantong refused trade {} (only this trade waits; rejected after {} of refusals): {what}",
            t.tid,
            humantime::format_duration(limit)
        ))
    }

    /// `下单时间非法`: the trade time is ahead of the server's clock. A POS clock a
    /// little fast waits until the server's time has passed the trade's; one further
    /// ahead than [`MAX_TRADE_AHEAD_SECS`] is a wrong clock or zone, and the trade is
    /// rejected saying by how much (only this trade: the others go on).
    fn trade_ahead(&self, t: &BuiltTrade, ctx: &Ctx, what: &str) -> Outcome {
        let ahead = ctx
            .trade_unix
            .get(&t.tid)
            .map(|at| at - self.offset.now_unix());
        match ahead {
            Some(a) if a > MAX_TRADE_AHEAD_SECS => Outcome::rejected(format!(
                "Wangdiantong refused trade {}: {what}: its trade_time is {a} s ahead of the server's clock (UTC+8): the POS clock or zone is wrong",
                t.tid
            )),
            Some(a) => Outcome::Retry {
                after: Some(std::time::Duration::from_secs(a.max(0) as u64 + 2)),
                reason: format!(
                    "Wangdiantong refused trade {}: {what}: its trade_time is {a} s ahead of the server's clock; sending it once the server's time has passed it",
                    t.tid
                ),
            },
            None => Outcome::retry(format!("Wangdiantong refused trade {}: {what}", t.tid)),
        }
    }

    /// Delivers stamped orders, `batch_size` per request; returns one outcome per
    /// order, in the order given.
    pub fn send_batch(&self, orders: &[&Order]) -> Vec<Outcome> {
        let mut results: Vec<Option<Outcome>> = vec![None; orders.len()];
        let mut built: Vec<(usize, BuiltTrade)> = Vec::new();
        let mut ctx = Ctx::default();
        let server_now = self.offset.now_unix();
        for (i, order) in orders.iter().enumerate() {
            match self.build(order) {
                Ok(t) => {
                    // The trade's moment: the till's wall time in the till's zone (it
                    // goes out as 东八区 wall time, see `server_wall`).
                    let at = order.unix_of(&order.order_time);
                    ctx.trade_unix.insert(t.tid.clone(), at);
                    // Known to be ahead of the server's clock: not sent before the
                    // server's time has passed it (the server would refuse it).
                    if at > server_now {
                        let what = format!("{TRADE_TIME_AHEAD} (not sent)");
                        results[i] = Some(self.trade_ahead(&t, &ctx, &what));
                        continue;
                    }
                    for w in &t.warnings {
                        log::warn!("wdt: {w}");
                    }
                    built.push((i, t));
                }
                Err(o) => results[i] = Some(o),
            }
        }
        // Requests hold one shop_no and distinct tids; otherwise order is kept.
        let mut pending: Vec<&(usize, BuiltTrade)> = built.iter().collect();
        while !pending.is_empty() {
            let shop_no = pending[0].1.shop_no.clone();
            let mut chunk: Vec<&(usize, BuiltTrade)> = Vec::new();
            let mut rest = Vec::new();
            for item in pending {
                let fits = chunk.len() < self.cfg.batch_size
                    && item.1.shop_no == shop_no
                    && !chunk.iter().any(|c| c.1.tid == item.1.tid);
                if fits {
                    chunk.push(item);
                } else {
                    rest.push(item);
                }
            }
            pending = rest;
            let trades: Vec<&BuiltTrade> = chunk.iter().map(|(_, t)| t).collect();
            let mut out = HashMap::new();
            self.send_chunk(&trades, &ctx, &mut out);
            for (i, t) in &chunk {
                let o = out
                    .remove(&t.tid)
                    .unwrap_or_else(|| Outcome::retry("no outcome for this trade"));
                if !matches!(o, Outcome::Retry { .. }) {
                    self.first_failures.clear(&t.tid);
                }
                results[*i] = Some(o);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Outcome::retry("not sent")))
            .collect()
    }

    /// `check-config --online`, summed up (see [`WdtClient::online_checks`]).
    pub fn check_online(&self) -> Result<String, String> {
        crate::upload::summarize(&self.online_checks())
    }

    /// `check-config --online`: a signed `system.Core.now` shows whether the account,
    /// key and secret are accepted (the first line; nothing else is checked when they
    /// are not), then `setting.Shop.queryShop` whether each source's `shop_no` exists
    /// and is a self-operated shop (自有平台, platform 127: the only kind pushSelf
    /// takes), a line per source (`[wdt]`'s own when no source is known).
    pub fn online_checks(&self) -> Vec<OnlineCheck> {
        let account = match self.call(CORE_NOW, "[]") {
            Classified::Accepted { .. } => format!(
                "wdt: account {} and key accepted (clock offset {} s)",
                self.cfg.sid,
                self.offset.offset()
            ),
            Classified::All(Outcome::Misconfigured { reason })
                if reason.contains(PERMISSION_MESSAGE) =>
            {
                return vec![OnlineCheck::account(Err(format!("wdt: {reason}")))];
            }
            Classified::All(Outcome::Misconfigured { reason }) => {
                return vec![OnlineCheck::account(Err(format!(
                    "wdt: the account, key or secret is refused: {reason}"
                )))];
            }
            Classified::All(o) => {
                return vec![OnlineCheck::account(Err(format!(
                    "wdt: unreachable or failing: {}",
                    o.text()
                )))];
            }
            Classified::DataError(w)
            | Classified::TimestampRefused(w)
            | Classified::Unrecognised(w) => {
                return vec![OnlineCheck::account(Err(format!("wdt: {w}")))];
            }
        };
        let mut subjects: Vec<(Option<String>, Result<String, String>)> = Vec::new();
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        for name in names {
            let shop = self.routes[name]
                .as_ref()
                .map(|t| t.shop_no.clone())
                .map_err(Clone::clone);
            subjects.push((Some(name.clone()), shop));
        }
        if subjects.is_empty() {
            if let Some(no) = &self.cfg.defaults.shop_no {
                subjects.push((None, Ok(no.clone())));
            }
        }
        let mut out = vec![OnlineCheck::account(Ok(account))];
        let mut found: HashMap<String, Result<String, String>> = HashMap::new();
        for (source, shop) in subjects {
            let result = match shop {
                // Only a disabled source's identity can be unresolved (an enabled
                // one's fails the config): its leftover orders wait.
                Err(e) => Ok(format!("not checked (a disabled source: {e})")),
                Ok(no) => found
                    .entry(no.clone())
                    .or_insert_with(|| self.check_shop(&no))
                    .clone(),
            };
            out.push(OnlineCheck { source, result });
        }
        out
    }

    /// Whether the ERP knows `shop_no` as a self-operated shop, asked with
    /// `setting.Shop.queryShop` (`[{"shop_no"}]`, paged: a query method is refused
    /// without its pager).
    fn check_shop(&self, shop_no: &str) -> Result<String, String> {
        let body = serde_json::json!([{ "shop_no": shop_no }]).to_string();
        let pager = [("page_size", "10"), ("page_no", "0"), ("calc_total", "1")];
        let (c, reply) = self.call_paged(QUERY_SHOP, &body, &pager);
        match c {
            Classified::Accepted { .. } => {}
            Classified::All(Outcome::Misconfigured { reason })
                if reason.contains(PERMISSION_MESSAGE) =>
            {
                return Err(format!("shop_no {shop_no} cannot be checked: {reason}"));
            }
            Classified::All(o) => {
                return Err(format!(
                    "shop_no {shop_no} cannot be checked: {QUERY_SHOP} failed: {}",
                    o.text()
                ));
            }
            Classified::DataError(w)
            | Classified::TimestampRefused(w)
            | Classified::Unrecognised(w) => {
                return Err(format!(
                    "shop_no {shop_no} cannot be checked: {QUERY_SHOP} failed: {w}"
                ));
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        judge_shop(&v["data"]["details"], shop_no)
    }
}

/// What `setting.Shop.queryShop`'s `details` say of `shop_no`.
fn judge_shop(details: &serde_json::Value, shop_no: &str) -> Result<String, String> {
    let shop = details
        .as_array()
        .and_then(|l| l.iter().find(|s| s["shop_no"] == shop_no));
    let Some(shop) = shop else {
        return Err(format!(
            "shop_no {shop_no} is unknown to the ERP ({QUERY_SHOP} finds no such shop): pushes would be refused 店铺编号不存在或已停用; fix shop_no"
        ));
    };
    let name = match shop["shop_name"].as_str() {
        Some(n) if !n.is_empty() && n != shop_no => format!(" ({n})"),
        _ => String::new(),
    };
    let platform = match &shop["platform_id"] {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    if shop["is_disabled"] == true {
        return Err(format!(
            "shop_no {shop_no}{name} is disabled (停用) in the ERP: pushes would be refused 店铺编号不存在或已停用"
        ));
    }
    match platform {
        Some(p) if p != OWN_PLATFORM => Err(format!(
            "shop_no {shop_no}{name} is a shop of platform {p}, not a self-operated one (自有平台, platform {OWN_PLATFORM}): pushes would be refused 店铺平台不是自有平台"
        )),
        Some(_) => Ok(format!(
            "shop_no {shop_no}{name} exists, self-operated (platform {OWN_PLATFORM})"
        )),
        None => Ok(format!(
            "shop_no {shop_no}{name} exists (its platform was not given)"
        )),
    }
}

/// Batches of up to `batch_size` trades of distinct tids, `concurrency` batches in
/// flight; a batch's outcomes are handed over together (one transaction).
impl Destination for WdtClient {
    fn name(&self) -> &'static str {
        "wdt"
    }

    /// One batch per request in flight.
    fn batch_limit(&self) -> usize {
        self.cfg.batch_size * self.cfg.concurrency
    }

    fn send(&self, orders: &[&Order], tick: &dyn Fn(), each: &mut Each<'_>) {
        let groups: Vec<&[&Order]> = orders.chunks(self.cfg.batch_size).collect();
        // Two lanes sharing a tenant without tid prefixes can make one tid of two
        // orders: never push both at once (send_batch orders them).
        let mut seen = std::collections::HashSet::new();
        let distinct = orders.iter().all(|o| seen.insert(o.order_no.as_str()));
        if groups.len() <= 1 || !distinct {
            let outcomes = self.send_batch(orders);
            let n = outcomes.len();
            for (i, outcome) in outcomes.into_iter().enumerate() {
                if each(i, outcome, i + 1 == n).is_break() {
                    return;
                }
            }
            return;
        }
        // One batch per sender; each batch's outcomes are handed over (and persisted,
        // in one transaction) as its answer arrives.
        let (tx, rx) = mpsc::channel::<(usize, Vec<Outcome>)>();
        std::thread::scope(|scope| {
            for (g, group) in groups.iter().enumerate() {
                let tx = tx.clone();
                scope.spawn(move || {
                    let _ = tx.send((g, self.send_batch(group)));
                });
            }
            drop(tx);
            let size = self.cfg.batch_size;
            for (g, outcomes) in rx {
                tick();
                let n = outcomes.len();
                for (k, outcome) in outcomes.into_iter().enumerate() {
                    if each(g * size + k, outcome, k + 1 == n).is_break() {
                        return;
                    }
                }
            }
        })
    }

    fn server_offset(&self) -> &Arc<ServerOffset> {
        &self.offset
    }

    fn online_checks(&self) -> Vec<OnlineCheck> {
        WdtClient::online_checks(self)
    }
}
