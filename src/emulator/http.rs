//! The emulators' HTTP/1.1 server: one task per connection, requests parsed whole
//! (head and body bounded), answered after the cloud's simulated latency, with the
//! in-flight count kept exact by a guard.

use super::*;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What to do with a request.
pub(crate) enum Action {
    Respond(Response),
    Hang(Duration),
    Reset,
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub(crate) fn json(v: &serde_json::Value) -> Response {
        Response {
            status: 200,
            content_type: "application/json;charset=utf-8",
            body: v.to_string().into_bytes(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain;charset=utf-8",
            body: body.as_bytes().to_vec(),
            headers: Vec::new(),
        }
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Decodes `application/x-www-form-urlencoded` (or a query string) into pairs.
pub(crate) fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Counts an API request in flight from its reading to its answer (or to the
/// connection's end), for `max_in_flight`.
pub(crate) struct InFlight {
    pub(crate) shared: Arc<Shared>,
    pub(crate) cloud: Cloud,
}

impl InFlight {
    /// Starts counting; returns the guard and the cloud's configured latency.
    pub(crate) fn start(shared: &Arc<Shared>, cloud: Cloud) -> (InFlight, Duration) {
        let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let c = cloud as usize;
        st.in_flight[c] += 1;
        st.max_in_flight[c] = st.max_in_flight[c].max(st.in_flight[c]);
        let latency = st.latency[c];
        let guard = InFlight {
            shared: shared.clone(),
            cloud,
        };
        (guard, latency)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.in_flight[self.cloud as usize] -= 1;
    }
}

pub(crate) async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = Vec::with_capacity(8192);
    loop {
        let req = match read_request(&mut stream, &mut buf).await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ =
                    write_response(&mut stream, &Response::text(status, "bad request"), true).await;
                return;
            }
        };
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let in_flight = api_cloud(&req).map(|c| InFlight::start(&shared, c));
        let action = dispatch(&shared, &req);
        if let Some((_, latency)) = &in_flight {
            if !latency.is_zero() {
                tokio::time::sleep(*latency).await;
            }
        }
        match action {
            Action::Respond(resp) => {
                drop(in_flight);
                if write_response(&mut stream, &resp, close).await.is_err() || close {
                    return;
                }
            }
            Action::Hang(d) => {
                // Hold the connection until the client gives up or the time passes.
                let mut sink = [0u8; 1024];
                let _ = tokio::time::timeout(d, async {
                    loop {
                        match stream.read(&mut sink).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                return;
            }
            Action::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
        }
    }
}

/// Serves both emulators on `listener` until `shutdown` completes; open connections
/// are dropped then.
pub async fn serve(listener: TcpListener, cfg: EmuConfig, shutdown: impl Future<Output = ()>) {
    let shared = Arc::new(Shared {
        cfg,
        state: Mutex::new(State::default()),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tasks.spawn(connection(stream, shared.clone()));
                }
                Err(e) => {
                    log::warn!("emulator: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    tasks.abort_all();
}
