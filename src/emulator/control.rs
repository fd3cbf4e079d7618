//! Routing of a request to a cloud or to the control endpoints (`/_emu/…`), the fault
//! modes that hit a cloud's next requests before they are processed, and the stats
//! and listings the tests read.

use super::*;

/// A fault mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultMode {
    /// HTTP 500.
    Http500,
    /// Read the request, answer nothing until the client gives up (or `hang_secs`).
    Hang,
    /// Read the request, then reset the connection (RST).
    Reset,
    /// HTTP 200 with a body that is not JSON.
    Garbage,
    /// The cloud's own error answer with `code` (Ovopark `stat.code`, WDT `status`).
    Code,
    /// Rate limited: WDT status 100 超过每分钟最大调用频率限制; Ovopark HTTP 429.
    RateLimit,
}

/// `POST /_emu/fault` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    pub target: Target,
    pub mode: FaultMode,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub hang_secs: Option<u64>,
}

pub(crate) fn one() -> u32 {
    1
}

#[derive(Debug, Clone)]
pub(crate) struct Fault {
    pub(crate) mode: FaultMode,
    pub(crate) remaining: u32,
    pub(crate) code: String,
    pub(crate) message: String,
    pub(crate) hang: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClockSpec {
    pub(crate) target: Target,
    pub(crate) skew_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LatencySpec {
    pub(crate) target: Target,
    pub(crate) ms: u64,
}

pub(crate) fn dispatch(shared: &Shared, req: &Request) -> Action {
    let mut st = match shared.state.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let Some(cloud) = api_cloud(req) else {
        return Action::Respond(control(&mut st, req));
    };
    st.requests[cloud as usize] += 1;
    let now = st.now(cloud);
    let date = if cloud == Cloud::Ovopark && st.ovo.reply.front_date {
        spec::http_date(crate::clock::unix_now())
    } else {
        spec::http_date(now)
    };
    if let Some(f) = st.take_fault(cloud) {
        st.count_answer(cloud, &format!("fault:{:?}", f.mode).to_lowercase());
        let mut resp = match f.mode {
            FaultMode::Hang => return Action::Hang(f.hang),
            FaultMode::Reset => return Action::Reset,
            FaultMode::Http500 => Response::text(500, "Internal Server Error"),
            FaultMode::Garbage => Response {
                status: 200,
                content_type: "text/html",
                body: b"<html><body>502 gateway says hello \x00\xff</body></html>".to_vec(),
                headers: Vec::new(),
            },
            FaultMode::Code => match cloud {
                Cloud::Ovopark => {
                    let zone =
                        spec::utc_offset_secs(&shared.cfg.ovopark.utc_offset).unwrap_or(8 * 3600);
                    let body = ovopark::answer(&f.code, "FAULT", &f.message, now, None);
                    Response::json(&ovopark::shaped(body, &st.ovo.reply, i64::from(zone)))
                }
                Cloud::Wdt => Response::json(&wdt::answer_error(&f.code, &f.message)),
            },
            FaultMode::RateLimit => match cloud {
                Cloud::Ovopark => {
                    let mut r = Response::text(429, "Too Many Requests");
                    r.headers.push(("Retry-After", "1".into()));
                    r
                }
                Cloud::Wdt => Response::json(&wdt::answer_error("100", wdt::RATE_LIMIT_MESSAGE)),
            },
        };
        if with_date(&st, cloud) {
            resp.headers.push(("Date", date));
        }
        return Action::Respond(resp);
    }
    let mut resp = match cloud {
        Cloud::Ovopark => ovopark::handle(&shared.cfg.ovopark, &mut st, req, now),
        Cloud::Wdt => wdt::handle(&shared.cfg.wdt, &mut st, req, now),
    };
    if with_date(&st, cloud) {
        resp.headers.push(("Date", date));
    }
    Action::Respond(resp)
}

/// Whether `cloud`'s answers carry a `Date` header (Ovopark's may be switched off).
fn with_date(st: &State, cloud: Cloud) -> bool {
    cloud == Cloud::Wdt || st.ovo.reply.date_header
}

/// `POST /_emu/deny` body: the key may not call `method` on `target`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenySpec {
    pub(crate) target: Target,
    pub(crate) method: String,
}

/// The `/_emu/…` control and listing endpoints.
pub(crate) fn control(st: &mut State, req: &Request) -> Response {
    let bad = |m: String| Response::text(400, &m);
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/_emu/health") => Response::text(200, "ok"),
        ("GET", "/_emu/ovopark/orders") => Response::json(&st.ovo.listing()),
        ("GET", "/_emu/wdt/trades") => Response::json(&st.wdt.listing()),
        ("GET", "/_emu/stats") => {
            let side = |c: Cloud| {
                serde_json::json!({
                    "requests": st.requests[c as usize],
                    "answers": st.answers[c as usize],
                    "skew_secs": st.skew[c as usize],
                    "latency_ms": st.latency[c as usize].as_millis() as u64,
                    "in_flight": st.in_flight[c as usize],
                    "max_in_flight": st.max_in_flight[c as usize],
                    "fault": st.faults[c as usize].as_ref().map(|f| serde_json::json!({
                        "mode": format!("{:?}", f.mode).to_lowercase(), "remaining": f.remaining})),
                })
            };
            Response::json(
                &serde_json::json!({"ovopark": side(Cloud::Ovopark), "wdt": side(Cloud::Wdt)}),
            )
        }
        ("POST", "/_emu/fault") => match serde_json::from_slice::<FaultSpec>(&req.body) {
            Ok(spec) => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        let code = match &spec.code {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(v) => v.to_string(),
                            None => match cloud {
                                Cloud::Ovopark => "-500".into(),
                                Cloud::Wdt => "99".into(),
                            },
                        };
                        st.faults[cloud as usize] = Some(Fault {
                            mode: spec.mode,
                            remaining: spec.count,
                            code,
                            message: spec
                                .message
                                .clone()
                                .unwrap_or_else(|| "injected fault".into()),
                            hang: Duration::from_secs(spec.hang_secs.unwrap_or(3600)),
                        });
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Err(e) => bad(format!("fault: {e}")),
        },
        ("POST", "/_emu/wdt/refuse") => {
            match serde_json::from_slice::<wdt::RefuseSpec>(&req.body) {
                Ok(spec) => {
                    st.wdt.refusals.retain(|r| r.tid != spec.tid);
                    st.wdt.refusals.push(spec);
                    Response::json(&serde_json::json!({"ok": true}))
                }
                Err(e) => bad(format!("refuse: {e}")),
            }
        }
        ("POST", "/_emu/wdt/drop") => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Drop {
                tid: String,
            }
            match serde_json::from_slice::<Drop>(&req.body) {
                Ok(d) => {
                    st.wdt.dropped.push(d.tid);
                    Response::json(&serde_json::json!({"ok": true}))
                }
                Err(e) => bad(format!("drop: {e}")),
            }
        }
        ("DELETE", "/_emu/wdt/refuse") => {
            st.wdt.refusals.clear();
            st.wdt.dropped.clear();
            st.wdt.refuse_held = false;
            Response::json(&serde_json::json!({"ok": true}))
        }
        ("POST", "/_emu/wdt/held") => {
            st.wdt.refuse_held = true;
            Response::json(&serde_json::json!({"ok": true}))
        }
        ("POST", "/_emu/deny") => match serde_json::from_slice::<DenySpec>(&req.body) {
            Ok(spec) => {
                if spec.target.hits(Cloud::Ovopark) {
                    st.ovo.denied.push(spec.method.clone());
                }
                if spec.target.hits(Cloud::Wdt) {
                    st.wdt.denied.push(spec.method);
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Err(e) => bad(format!("deny: {e}")),
        },
        ("DELETE", "/_emu/deny") => {
            st.ovo.denied.clear();
            st.wdt.denied.clear();
            Response::json(&serde_json::json!({"ok": true}))
        }
        ("POST", "/_emu/ovopark/reply") => {
            match serde_json::from_slice::<ovopark::ReplyForm>(&req.body) {
                Ok(form) => {
                    st.ovo.reply = form;
                    Response::json(&serde_json::json!({"ok": true}))
                }
                Err(e) => bad(format!("reply: {e}")),
            }
        }
        ("DELETE", "/_emu/fault") => {
            st.faults = [None, None];
            Response::json(&serde_json::json!({"ok": true}))
        }
        ("POST", "/_emu/clock") => match serde_json::from_slice::<ClockSpec>(&req.body) {
            Ok(spec) => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        st.skew[cloud as usize] = spec.skew_secs;
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Err(e) => bad(format!("clock: {e}")),
        },
        ("POST", "/_emu/latency") => match serde_json::from_slice::<LatencySpec>(&req.body) {
            Ok(spec) if spec.ms <= 60_000 => {
                for cloud in [Cloud::Ovopark, Cloud::Wdt] {
                    if spec.target.hits(cloud) {
                        st.latency[cloud as usize] = Duration::from_millis(spec.ms);
                    }
                }
                Response::json(&serde_json::json!({"ok": true}))
            }
            Ok(_) => bad("latency: ms must be at most 60000".into()),
            Err(e) => bad(format!("latency: {e}")),
        },
        (_, p) if p.starts_with("/_emu/") || p == "/cloud.api" || p == "/openapi" => {
            Response::text(405, "method not allowed")
        }
        _ => Response::text(404, "not found"),
    }
}

/// Reads one request from the connection; `Ok(None)` when the peer closed cleanly.
pub(crate) async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> Result<Option<Request>, u16> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = parsed.method.unwrap_or("").to_string();
                let target = parsed.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let (path, query) = (path.to_string(), query.to_string());
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                let find = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(n))
                        .map(|(_, v)| v.trim().to_string())
                };
                if find("transfer-encoding").is_some() {
                    return Err(411);
                }
                let len: usize = match find("content-length") {
                    Some(v) => v.parse().map_err(|_| 400u16)?,
                    None => 0,
                };
                if len > MAX_BODY {
                    return Err(413);
                }
                buf.drain(..head_len);
                while buf.len() < len {
                    let mut chunk = [0u8; 8192];
                    let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
                    if n == 0 {
                        return Err(400);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body: Vec<u8> = buf.drain(..len).collect();
                return Ok(Some(Request {
                    method,
                    path,
                    query,
                    headers,
                    body,
                }));
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > MAX_HEAD {
                    return Err(413);
                }
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await.map_err(|_| 400u16)?;
                if n == 0 {
                    return if buf.is_empty() { Ok(None) } else { Err(400) };
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => return Err(400),
        }
    }
}

pub(crate) async fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    close: bool,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&resp.body).await?;
    stream.flush().await
}

/// Which cloud an API request is for (`None`: a control route or nothing).
pub(crate) fn api_cloud(req: &Request) -> Option<Cloud> {
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", "/cloud.api") => Some(Cloud::Ovopark),
        ("POST", "/openapi") => Some(Cloud::Wdt),
        _ => None,
    }
}
