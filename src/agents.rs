//! Talking to agents over HTTP: building their URLs from the template, the auth header, asking
//! each what it runs, and terminating a process. Every failure is a reason string, never a panic.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use color_eyre::eyre::{Result, bail};
use futures_util::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use sha2::Sha256;
use url::Url;

use crate::broken::{Rule, broken};
use crate::redact::{Secret, redact_url, scrub};
use crate::snapshot::{AgentAnswer, AgentReport};
use crate::tls::CaCerts;

const PLACEHOLDER: &str = "{agent}";
/// An agent's answer larger than this is refused rather than buffered.
pub(crate) const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;
const TOKEN_HEADER: &str = "X-Trinity-Agent-Token";
/// The original error is a nicety: it never holds up an apply for long.
const LAST_ERROR_TIMEOUT: Duration = Duration::from_secs(3);
/// Everything but RFC 3986's unreserved characters is percent-encoded in an agent name.
const NAME_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The agent URL template, e.g. `http://agent-{agent}:8000` or `https://gw.example/agents/{agent}`.
/// It may carry userinfo, so it is held as a secret.
#[derive(Clone, Debug)]
pub(crate) struct UrlTemplate {
    template: Secret,
    /// `{agent}` stands in the authority: names must then be plain DNS labels.
    in_host: bool,
    /// Every agent is a host of its own (`http://agent-{agent}:8000`), not a path or the
    /// userinfo on one shared host.
    host_per_agent: bool,
}

impl UrlTemplate {
    pub(crate) fn parse(template: &str) -> Result<UrlTemplate> {
        if !template.contains(PLACEHOLDER) {
            bail!(
                "agent URL template {:?} must contain {PLACEHOLDER}",
                redact_url(template)
            );
        }
        let probe = template.replace(PLACEHOLDER, "probe");
        let url = Url::parse(&probe).map_err(|err| {
            color_eyre::eyre::eyre!(
                "agent URL template {:?} is not a valid URL: {err}",
                redact_url(&probe)
            )
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            bail!(
                "agent URL template {:?} must be an http:// or https:// URL with a host",
                redact_url(&probe)
            );
        }
        if url.query().is_some() || url.fragment().is_some() {
            bail!(
                "agent URL template {:?} must not have a query or fragment",
                redact_url(&probe)
            );
        }
        let authority_end = template
            .find("://")
            .map(|i| i + 3)
            .and_then(|start| template[start..].find('/').map(|i| start + i));
        let placeholder_at = template.find(PLACEHOLDER).unwrap_or_default();
        let in_host = authority_end.is_none_or(|end| placeholder_at < end);
        let host_of = |name: &str| {
            Url::parse(&template.replace(PLACEHOLDER, name))
                .ok()
                .map(|url| (url.host_str().map(str::to_owned), url.port()))
        };
        let host_per_agent = host_of("a") != host_of("b");
        Ok(UrlTemplate {
            template: Secret::new(template),
            in_host,
            host_per_agent,
        })
    }

    /// The agent's base URL. The name can never change the scheme, the authority or the path
    /// structure: it is percent-encoded, and in the host it must be a plain DNS label.
    pub(crate) fn base_url(&self, agent: &str) -> Result<Url, String> {
        let bad = |why: &str| {
            Err(format!(
                "agent name {agent:?} cannot be used in a URL: {why}"
            ))
        };
        if agent.is_empty() || agent == "." || agent == ".." {
            return bad("empty or a dot segment");
        }
        if self.in_host
            && !agent
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return bad("in the host part only letters, digits, '-' and '_' are allowed");
        }
        let encoded = utf8_percent_encode(agent, NAME_ENCODE).to_string();
        Url::parse(&self.template.expose().replace(PLACEHOLDER, &encoded))
            .or_else(|err| bad(&err.to_string()))
    }
}

/// `base` with path segments appended (each percent-encoded, `/` included).
fn endpoint(base: &Url, segments: &[&str]) -> Result<Url, String> {
    if segments
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "refusing an empty or dot path segment in {segments:?}"
        ));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| format!("{} cannot take a path", redact_url(base.as_str())))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// The `X-Trinity-Agent-Token` value: hex HMAC-SHA256 of `trinity-agent-auth:v1:{agent}`.
pub(crate) fn auth_token(secret: &str, agent: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(b"trinity-agent-auth:v1:");
    mac.update(agent.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// How a terminate request ended, when the agent gave a usable answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Terminated {
    /// 2xx: terminated, or already finished.
    Yes,
    /// 404: the agent does not run it.
    NotRunning,
}

/// How to reach the agents.
#[derive(Clone, Debug)]
pub(crate) struct AgentConfig {
    pub template: UrlTemplate,
    /// `AGENT_AUTH_SECRET`: signs every call when set.
    pub secret: Option<Secret>,
    /// Per request (and per connection attempt).
    pub timeout: Duration,
    pub terminate_timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// `--ca-cert`: roots trusted for https agents next to the system's.
    pub ca_certs: CaCerts,
}

/// The HTTP client for agents. When `{agent}` names the host, every agent is a host of its own
/// and a kept-alive connection would never be used again: none is kept, or a fleet of 10 000
/// would hold 10 000 sockets open and run out of descriptors.
fn http_client(config: &AgentConfig) -> Result<reqwest::Client> {
    crate::tls::install_provider();
    let mut http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.timeout)
        .user_agent(concat!("trinity-watchdog/", env!("CARGO_PKG_VERSION")));
    if config.template.host_per_agent {
        http = http.pool_max_idle_per_host(0);
    }
    for cert in &config.ca_certs.certs {
        http = http.add_root_certificate(reqwest::Certificate::from_der(cert)?);
    }
    Ok(http.build()?)
}

pub(crate) struct AgentClient {
    http: reqwest::Client,
    config: AgentConfig,
}

impl AgentClient {
    pub(crate) fn new(config: &AgentConfig) -> Result<AgentClient> {
        Ok(AgentClient {
            http: http_client(config)?,
            config: config.clone(),
        })
    }

    /// Closes the connections the gathering kept alive (only a template whose agents share one
    /// host has any: a gateway, `{agent}` in the path) by starting a fresh client, so that a fleet's
    /// worth of idle sockets and their buffers is not held through planning (9 MB of peak RSS
    /// for 512 of them at A = 10 000, BENCHMARKS.md). The apply's few requests open their own. Should the fresh client fail (its
    /// root certificates cannot be read, say), the old one is kept: nothing is lost but memory.
    pub(crate) fn close_idle(&mut self) {
        if self.config.template.host_per_agent {
            return;
        }
        if let Ok(fresh) = http_client(&self.config) {
            self.http = fresh;
        }
    }

    /// Asks every agent what it runs, `concurrency` at a time; the reports come back sorted by name.
    /// Once `stop` is set no new request starts: the agents not asked yet are unreachable, with
    /// that reason.
    pub(crate) async fn running_all(
        &self,
        agents: &[String],
        progress: &indicatif::ProgressBar,
        stop: &AtomicBool,
    ) -> Vec<AgentReport> {
        let mut reports: Vec<AgentReport> = futures_util::stream::iter(agents)
            .map(|agent| async move {
                let report = if stop.load(Ordering::SeqCst) {
                    AgentReport {
                        name: agent.clone(),
                        latency_ms: None,
                        answer: Err("not asked: the apply was interrupted".to_owned()),
                    }
                } else {
                    self.running(agent).await
                };
                progress.inc(1);
                report
            })
            .buffer_unordered(self.config.concurrency)
            .collect()
            .await;
        reports.sort_by(|a, b| a.name.cmp(&b.name));
        reports
    }

    /// `GET /api/executions/running` on one agent.
    pub(crate) async fn running(&self, agent: &str) -> AgentReport {
        let started = Instant::now();
        let answer = async {
            let url = endpoint(
                &self.config.template.base_url(agent)?,
                &["api", "executions", "running"],
            )?;
            let response = self
                .send(Method::GET, url, agent, self.config.timeout)
                .await?;
            let status = response.status();
            if status != StatusCode::OK {
                return Err(describe_status(status));
            }
            parse_answer(&read_capped(response).await?)
        }
        .await
        .or_else(|reason| {
            if broken(Rule::Unreachable) {
                Ok(AgentAnswer::default())
            } else {
                Err(reason)
            }
        });
        AgentReport {
            name: agent.to_owned(),
            latency_ms: Some(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)),
            answer,
        }
    }

    /// `GET /api/executions/{id}/last-error`: the error the agent recorded for an execution, if
    /// it has one, as Trinity stores it: `[{error_type}] {error_message}`. Optional by design:
    /// older images lack the endpoint, and any failure (404, timeout, an answer that does not
    /// parse) simply means there is none. The text is the agent's, unscrubbed.
    pub(crate) async fn last_error(&self, agent: &str, id: &str) -> Option<String> {
        let url = endpoint(
            &self.config.template.base_url(agent).ok()?,
            &["api", "executions", id, "last-error"],
        )
        .ok()?;
        let response = self
            .send(
                Method::GET,
                url,
                agent,
                self.config.timeout.min(LAST_ERROR_TIMEOUT),
            )
            .await
            .ok()?;
        if response.status() != StatusCode::OK {
            return None;
        }
        #[derive(serde::Deserialize)]
        struct LastError {
            error_type: Option<String>,
            error_message: Option<String>,
        }
        let body: LastError = serde_json::from_slice(&read_capped(response).await.ok()?).ok()?;
        let message = body.error_message.filter(|m| !m.trim().is_empty());
        let kind = body.error_type.filter(|t| !t.trim().is_empty());
        match (kind, message) {
            (Some(kind), Some(message)) => Some(format!("[{kind}] {message}")),
            (None, Some(message)) => Some(message),
            (Some(kind), None) => Some(format!("[{kind}]")),
            (None, None) => None,
        }
    }

    /// `POST /api/executions/{id}/terminate`.
    pub(crate) async fn terminate(&self, agent: &str, id: &str) -> Result<Terminated, String> {
        let url = endpoint(
            &self.config.template.base_url(agent)?,
            &["api", "executions", id, "terminate"],
        )?;
        let response = self
            .send(Method::POST, url, agent, self.config.terminate_timeout)
            .await?;
        match response.status() {
            status if status.is_success() => Ok(Terminated::Yes),
            StatusCode::NOT_FOUND => Ok(Terminated::NotRunning),
            status => Err(format!("terminate answered {}", describe_status(status))),
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        agent: &str,
        timeout: Duration,
    ) -> Result<reqwest::Response, String> {
        let shown = format!("{method} {}", redact_url(url.as_str()));
        let mut request = self.http.request(method, url).timeout(timeout);
        if let Some(secret) = &self.config.secret {
            request = request.header(TOKEN_HEADER, auth_token(secret.expose(), agent));
        }
        request.send().await.map_err(|err| {
            if err.is_timeout() {
                format!("{shown}: no answer within {}s", timeout.as_secs_f32())
            } else {
                format!("{shown}: {}", error_chain(&err.without_url()))
            }
        })
    }
}

fn describe_status(status: StatusCode) -> String {
    match status {
        StatusCode::UNAUTHORIZED => {
            "HTTP 401 Unauthorized (check --agent-secret / AGENT_AUTH_SECRET)".to_owned()
        }
        status if status.is_redirection() => format!("HTTP {status} (redirects are not followed)"),
        status => format!("HTTP {status}"),
    }
}

/// An error and its causes on one line, without duplicates.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// Reads a body, refusing (not buffering) one larger than `MAX_ANSWER_BYTES`.
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(format!("answer is larger than {MAX_ANSWER_BYTES} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| format!("reading the answer: {}", error_chain(&err.without_url())))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answer is larger than {MAX_ANSWER_BYTES} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `GET /api/executions/running` as agents send it. Unknown fields (`started_at`, `metadata`, …)
/// are skipped without being built; a `null` list is an absent one.
#[derive(serde::Deserialize)]
#[serde(expecting = "a JSON object")]
struct RawAnswer {
    #[serde(default)]
    executions: Option<Vec<RawEntry>>,
    #[serde(default)]
    recently_completed_ids: Option<Vec<String>>,
    #[serde(default)]
    pending_ids: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
#[serde(expecting = "an object")]
struct RawEntry {
    #[serde(default)]
    execution_id: Option<String>,
}

/// Parses `GET /api/executions/running`. Strict about types (a wrong one is named with its path),
/// lenient about absent fields; entries without an id and empty ids are skipped.
pub fn parse_answer(body: &[u8]) -> Result<AgentAnswer, String> {
    let describe = |path: &str, inner: &serde_json::Error| {
        if inner.is_data() && path == "." {
            format!("answer is not a JSON object ({inner})")
        } else if inner.is_data() {
            format!("{path}: {inner}")
        } else {
            let start = scrub(
                &String::from_utf8_lossy(&body[..body.len().min(40)])
                    .replace(char::is_control, " "),
            );
            format!("answer is not JSON ({inner}); it starts with {start:?}")
        }
    };
    // Derived structs would also accept an array (positional fields): only an object is an answer.
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => "answer is not a JSON object".to_owned(),
                Err(err) => describe("", &err),
            },
        );
    }
    // The fast path; only an invalid answer pays for tracking the path of what was wrong.
    let raw: RawAnswer = match serde_json::from_slice(body) {
        Ok(raw) => raw,
        Err(plain) => {
            let mut json = serde_json::Deserializer::from_slice(body);
            return Err(
                match serde_path_to_error::deserialize::<_, RawAnswer>(&mut json) {
                    Err(err) => describe(&err.path().to_string(), err.inner()),
                    Ok(_) => describe(".", &plain),
                },
            );
        }
    };
    let Some(executions) = raw.executions else {
        return Err("answer has no \"executions\" field".to_owned());
    };
    let non_empty = |ids: Vec<String>| {
        ids.into_iter()
            .filter(|id| !id.is_empty())
            .collect::<Vec<_>>()
    };
    Ok(AgentAnswer {
        running: executions
            .into_iter()
            .filter_map(|entry| entry.execution_id)
            .filter(|id| !id.is_empty())
            .collect(),
        recently_completed: raw.recently_completed_ids.map(non_empty),
        pending: raw.pending_ids.map(non_empty),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_new_and_old_agent_images() {
        let new = br#"{"executions":[{"execution_id":"a","started_at":"x","metadata":{}},{"execution_id":""},{"metadata":{}}],
                       "recently_completed_ids":["b"],"pending_ids":["c",""]}"#;
        assert_eq!(
            parse_answer(new),
            Ok(AgentAnswer {
                running: vec!["a".into()],
                recently_completed: ids(&["b"]),
                pending: ids(&["c"])
            })
        );
        let old = br#"{"executions":[], "pending_ids": null}"#;
        assert_eq!(
            parse_answer(old),
            Ok(AgentAnswer {
                running: vec![],
                recently_completed: None,
                pending: None
            })
        );
    }

    #[test]
    fn invalid_answers_say_why() {
        for (body, why) in [
            (&b"<html>oops</html>"[..], "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (
                b" [[{\"execution_id\":\"a\"}],null,null]",
                "not a JSON object",
            ),
            (b"{}", "no \"executions\""),
            (b"{\"executions\":null}", "no \"executions\""),
            (
                b"{\"executions\":{}}",
                "executions: invalid type: map, expected a sequence",
            ),
            (
                b"{\"executions\":[1]}",
                "executions[0]: invalid type: integer `1`, expected an object",
            ),
            (
                b"{\"executions\":[{\"execution_id\":7}]}",
                "executions[0].execution_id: invalid type: integer `7`",
            ),
            (
                b"{\"executions\":[],\"pending_ids\":\"x\"}",
                "pending_ids: invalid type: string",
            ),
            (
                b"{\"executions\":[],\"recently_completed_ids\":[1]}",
                "recently_completed_ids[0]: invalid type: integer",
            ),
            (b"{\"executions\":[]} trailing", "not JSON"),
            (b"{\"executions\":[", "not JSON"),
        ] {
            let err = parse_answer(body).unwrap_err();
            assert!(err.contains(why), "{err:?} should contain {why:?}");
        }
    }

    #[test]
    fn token_is_hex_hmac_sha256() {
        // Reference value from Python: hmac.new(b"s3cret", b"trinity-agent-auth:v1:alpha", sha256).hexdigest()
        assert_eq!(
            auth_token("s3cret", "alpha"),
            "18fb8ec9a90fcda3999bba6d82ab2706052f5bf4bc3839eb31a0fa9cd7a3c570"
        );
    }

    #[test]
    fn only_a_host_per_agent_keeps_no_connection_alive() {
        for (template, per_agent) in [
            ("http://agent-{agent}:8000", true),
            ("http://127.0.0.{agent}:8000/{agent}", true),
            ("https://gw.example/agents/{agent}", false),
            // Userinfo is sent as a header: every agent is the same host.
            ("http://{agent}@gw.example/", false),
            ("http://user:{agent}@gw.example/", false),
        ] {
            let parsed = UrlTemplate::parse(template).unwrap();
            assert_eq!(parsed.host_per_agent, per_agent, "{template}");
        }
    }

    #[test]
    fn template_keeps_host_and_appends_paths() {
        let t = UrlTemplate::parse("https://gw.example/agents/{agent}/").unwrap();
        let base = t.base_url("a/b?c#d@e f..é").unwrap();
        assert_eq!(base.host_str(), Some("gw.example"));
        let url = endpoint(&base, &["api", "executions", "x/../y?", "terminate"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://gw.example/agents/a%2Fb%3Fc%23d%40e%20f..%C3%A9/api/executions/x%2F..%2Fy%3F/terminate"
        );
        assert!(t.base_url("..").is_err());
        assert!(endpoint(&base, &["api", ".."]).is_err());

        let t = UrlTemplate::parse("http://agent-{agent}:8000").unwrap();
        assert_eq!(
            t.base_url("alpha_1").unwrap().as_str(),
            "http://agent-alpha_1:8000/"
        );
        for name in ["evil.com", "a@b", "a/b", "a:1", "é"] {
            assert!(t.base_url(name).is_err(), "{name}");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        for template in [
            "http://agent:8000",
            "ftp://{agent}/",
            "not a url {agent}",
            "http://x/{agent}?q=1",
            "/{agent}",
        ] {
            assert!(UrlTemplate::parse(template).is_err(), "{template}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn the_answer_parser_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_answer(&bytes);
        }

        #[test]
        fn the_answer_parser_never_panics_on_json_like_input(text in r#"\{("executions"|"pending_ids"|"recently_completed_ids"|"execution_id"|\[|\]|\{|\}|:|,|null|1|"x"|""|true)*\}"#) {
            let _ = parse_answer(text.as_bytes());
        }
    }
}
