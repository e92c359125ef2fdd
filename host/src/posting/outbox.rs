//! The outbox worker: sends each pending document to its ERP, exactly once.
//!
//! Exactly once rests on four things: the outbox entry is written in the
//! same transaction as its document (nothing to send is ever lost); the
//! request carries the document's deterministic id as idempotency key / external id,
//! so a resend after an ambiguous failure (timeout, reset, 5xx after commit)
//! finds the original instead of creating a second invoice; for ERPs
//! without idempotency the mapper's look-up request runs before any resend;
//! and an entry is marked in flight (durably) before its request leaves, so
//! after a crash mid-request the look-up runs too.
//!
//! Posting may take several requests (a conversation: create a draft, post
//! it, read its number back; or send asynchronously, then read back): each
//! answer the mapper reads may name the next request, which is stored as
//! the entry's current request before it is sent, so retries and restarts
//! continue at the step where the conversation stood.
//!
//! Targets are posted to in parallel, each with at most its
//! `max_concurrency` requests in flight and `max_requests_per_second`
//! requests a second, behind a circuit breaker per
//! target (after `breaker_failures` consecutive transient failures nothing
//! is sent for `breaker_cooldown_ms`, then one probe decides).
//! Transient failures (connection errors, timeouts, 5xx, 429) are retried
//! with exponential backoff and jitter, honouring `Retry-After`; business
//! rejections mark the document rejected with the ERP's message, classified
//! for the exception queue ([`super::exceptions`]).

use super::document::{Document, PostingStatus, Rejection};
use super::to_wit_target;
use crate::clock::SharedClock;
use crate::config::{ErpTargetConfig, PostingConfig};
use crate::plugins::registry::Registry;
use crate::plugins::{Kind, Plugin, PluginError, Runtime, bindings::posting as wit};
use crate::store::{self, Store, StoreError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::ConflictableTransactionError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The HTTP request a mapper produced, stored as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A document waiting to reach its ERP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub tenant: String,
    pub document_id: String,
    pub target: String,
    pub request: StoredRequest,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    /// The last attempt may have reached the ERP (timeout, reset, 5xx):
    /// look the document up before sending again.
    pub ambiguous: bool,
    pub last_error: Option<String>,
    /// Set (and flushed) before the request is sent, cleared when its
    /// outcome is recorded: found set, a process died mid-request, so the
    /// document is looked up before sending again.
    #[serde(default)]
    pub in_flight: bool,
    /// Requests of the conversation answered so far (the current request is
    /// the next one).
    #[serde(default)]
    pub step: u32,
}

/// Most requests one attempt may send in a posting conversation: a mapper
/// that keeps asking for more is refused (`invalid-output`), not followed
/// for ever.
pub const MAX_STEPS: u32 = 16;

/// The rejection code of a document the ERP answered with a number it had
/// given another document of the same target.
pub const DUPLICATE_ERP_NUMBER: &str = "duplicate-erp-number";

/// What one attempt came to.
enum Attempt {
    Posted(String),
    Rejected { code: String, field: Option<String>, message: String },
    Retry { error: String, ambiguous: bool, retry_after: Option<Duration> },
}

impl Attempt {
    fn retry(error: String) -> Attempt {
        Attempt::Retry { error, ambiguous: false, retry_after: None }
    }
}

/// A target's circuit breaker, as `GET /v1/targets` shows it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Breaker {
    /// `closed` (sending), `open` (not sending until `open_until`) or
    /// `half_open` (the cool-down is over: the next attempt is a probe).
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub open_until: Option<DateTime<Utc>>,
}

/// How many of a target's due entries a pass may attempt.
enum Allowance {
    All,
    Probe,
    None,
}

#[derive(Clone)]
pub struct Poster {
    store: Store,
    registry: Registry,
    targets: Arc<BTreeMap<String, ErpTargetConfig>>,
    config: PostingConfig,
    http: reqwest::Client,
    wake: Arc<Notify>,
    breakers: Arc<std::sync::Mutex<BTreeMap<String, Breaker>>>,
    /// Per target with a rate limit: when its next request may go.
    next_slot: Arc<std::sync::Mutex<BTreeMap<String, tokio::time::Instant>>>,
    /// Business time: when entries are due, breakers open, documents post.
    clock: SharedClock,
}

impl Poster {
    pub fn new(
        store: Store,
        registry: Registry,
        targets: BTreeMap<String, ErpTargetConfig>,
        config: PostingConfig,
        clock: SharedClock,
    ) -> Poster {
        Poster {
            clock,
            store,
            registry,
            targets: Arc::new(targets),
            config,
            http: reqwest::Client::builder().no_proxy().build().unwrap_or_default(),
            wake: Arc::new(Notify::new()),
            breakers: Arc::default(),
            next_slot: Arc::default(),
        }
    }

    /// Waits for the target's next request slot under its rate limit.
    async fn pace(&self, target: &str, config: &ErpTargetConfig) {
        let Some(rate) = config.max_requests_per_second.filter(|r| *r > 0) else { return };
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|p| p.into_inner());
            let now = tokio::time::Instant::now();
            let slot = next.get(target).copied().unwrap_or(now).max(now);
            next.insert(target.to_string(), slot + Duration::from_secs(1) / rate);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Every configured target's breaker.
    pub fn breakers(&self, now: DateTime<Utc>) -> BTreeMap<String, Breaker> {
        let all = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        self.targets
            .keys()
            .map(|name| {
                let mut b = all.get(name).cloned().unwrap_or_default();
                b.state = match b.open_until {
                    Some(until) if now < until => "open",
                    Some(_) => "half_open",
                    None => "closed",
                };
                (name.clone(), b)
            })
            .collect()
    }

    fn allowance(&self, target: &str, now: DateTime<Utc>) -> Allowance {
        let all = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(target).and_then(|b| b.open_until) {
            Some(until) if now < until => Allowance::None,
            Some(_) => Allowance::Probe,
            None => Allowance::All,
        }
    }

    /// Counts an attempt's outcome against its target's breaker: an answer
    /// the ERP gave (posted or rejected) closes it; a transient failure
    /// counts, and opens it at the target's threshold (again at once after
    /// a failed probe).
    fn count(&self, target: &str, transient: bool, now: DateTime<Utc>) {
        let mut all = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let b = all.entry(target.to_string()).or_default();
        if !transient {
            *b = Breaker::default();
            return;
        }
        b.consecutive_failures += 1;
        let Some(t) = self.targets.get(target) else { return };
        if b.consecutive_failures >= t.breaker_failures {
            if b.open_until.is_none() {
                tracing::warn!(target, failures = b.consecutive_failures, "circuit breaker opened");
            }
            b.open_until = Some(now + chrono::Duration::milliseconds(t.breaker_cooldown_ms as i64));
        }
    }

    /// Wakes the worker: new entries are due.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.run_due(self.clock.now()).await {
                tracing::error!(error = %e, "outbox pass failed");
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(self.config.poll_ms)) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Attempts the entries due at `now`, targets in parallel, each target
    /// with at most its `max_concurrency` requests in flight and only what
    /// its circuit breaker allows; returns how many were attempted.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut by_target: BTreeMap<String, Vec<(Vec<u8>, OutboxEntry)>> = BTreeMap::new();
        for (key, entry) in self.store.scan::<OutboxEntry>(&self.store.outbox, b"")? {
            if entry.next_attempt_at <= now {
                by_target.entry(entry.target.clone()).or_default().push((key, entry));
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut n = 0;
        for (target, mut entries) in by_target {
            match self.allowance(&target, now) {
                Allowance::All => {}
                Allowance::Probe => entries.truncate(1),
                Allowance::None => continue,
            }
            let limit = self.targets.get(&target).map_or(1, |t| t.max_concurrency.max(1));
            let permits = Arc::new(tokio::sync::Semaphore::new(limit));
            self.mark_in_flight(&entries).await?;
            for (key, entry) in entries {
                n += 1;
                let (this, permits) = (self.clone(), permits.clone());
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let mut entry = entry;
                    let outcome = this.attempt(&key, &mut entry).await;
                    this.count(&entry.target, matches!(outcome, Attempt::Retry { .. }), this.clock.now());
                    this.record(&key, entry, outcome).await
                });
            }
        }
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            let result = done.map_err(|e| StoreError::Aborted(format!("posting task: {e}"))).and_then(|r| r);
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(n), Err)
    }

    /// Marks entries as in flight, durably, before any of their requests
    /// leaves (one batch and one flush for all of them).
    async fn mark_in_flight(&self, entries: &[(Vec<u8>, OutboxEntry)]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (key, entry) in entries {
            let marked = OutboxEntry { in_flight: true, ..entry.clone() };
            batch.insert(key.as_slice(), serde_json::to_vec(&marked).map_err(|e| StoreError::Aborted(e.to_string()))?);
        }
        self.store.outbox.apply_batch(batch)?;
        self.store.flush().await
    }

    /// One attempt: looks the document up first if an earlier attempt may
    /// have reached the ERP, then goes through the conversation from the
    /// entry's current request until an outcome. `entry` ends holding the
    /// current request (the step to retry from).
    async fn attempt(&self, key: &[u8], entry: &mut OutboxEntry) -> Attempt {
        let Some(target) = self.targets.get(&entry.target) else {
            return Attempt::retry(format!("no ERP target {:?} is configured", entry.target));
        };
        let mapper = match self.registry.find(&entry.tenant, &target.mapper, None, Kind::ErpMapper) {
            Ok(m) => m,
            Err(e) => return Attempt::retry(format!("mapper: {e}")),
        };
        let doc = match self.store.get::<Document>(&self.store.documents, key) {
            Ok(Some(d)) => wit::PostingDocument::from(&d),
            Ok(None) => return Attempt::retry(format!("document {} is missing", entry.document_id)),
            Err(e) => return Attempt::retry(format!("reading document {}: {e}", entry.document_id)),
        };
        let call = Call { poster: self, target, mapper: &mapper, doc, wtarget: to_wit_target(&entry.target, target) };
        if entry.ambiguous || entry.in_flight {
            match call.look_up().await {
                Ok(wit::LookupOutcome::Found(number)) => return Attempt::Posted(number),
                Ok(wit::LookupOutcome::Next(request)) => {
                    if let Err(e) = self.advance(key, entry, request).await {
                        return Attempt::retry(format!("storing the next request: {e}"));
                    }
                }
                Ok(wit::LookupOutcome::Absent) => {}
                Err(e) => return Attempt::retry(format!("look-up before resend: {e}")),
            }
        }
        let mut sent = 0;
        loop {
            sent += 1;
            let request = entry.request.clone();
            let method = match parse_method(&request) {
                Ok(m) => m,
                Err(e) => {
                    let message = e.to_string();
                    return Attempt::Rejected { code: "invalid-output".into(), field: Some("method".into()), message };
                }
            };
            let response = match self.send(target, method, &request).await {
                Ok(r) => r,
                Err(e) => {
                    // A timeout or a broken connection may come after the ERP committed.
                    let ambiguous = e.is_timeout() || !e.is_connect();
                    return Attempt::Retry { error: format!("sending: {e}"), ambiguous, retry_after: None };
                }
            };
            let retry_after =
                header(&response, "retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
            let status = response.status;
            match call.read_response(request, response).await {
                Ok(wit::Step::Posted(number)) => return Attempt::Posted(number),
                Ok(wit::Step::Rejected(e)) => {
                    return Attempt::Rejected { code: e.code, field: e.field, message: e.message };
                }
                Ok(wit::Step::Transient(error)) => {
                    return Attempt::Retry { error, ambiguous: status >= 500, retry_after };
                }
                Ok(wit::Step::Next(next)) => {
                    if sent >= MAX_STEPS {
                        return Attempt::Rejected {
                            code: "invalid-output".into(),
                            field: None,
                            message: format!("mapper {} asked for more than {MAX_STEPS} requests", mapper.name),
                        };
                    }
                    if let Err(e) = self.advance(key, entry, next).await {
                        return Attempt::retry(format!("storing the next request: {e}"));
                    }
                }
                // The ERP answered, but what it said is unknown: it may have committed.
                Err(e) => return Attempt::Retry { error: e.to_string(), ambiguous: true, retry_after: None },
            }
        }
    }

    /// Makes `request` the entry's current request, durably, before it is sent.
    async fn advance(&self, key: &[u8], entry: &mut OutboxEntry, request: wit::ErpRequest) -> Result<(), StoreError> {
        entry.request = StoredRequest::from(request);
        entry.step += 1;
        entry.ambiguous = false;
        entry.in_flight = true;
        self.store.put(&self.store.outbox, key, &*entry)?;
        self.store.flush().await
    }

    async fn send(
        &self,
        target: &ErpTargetConfig,
        method: reqwest::Method,
        r: &StoredRequest,
    ) -> Result<wit::ErpResponse, reqwest::Error> {
        self.pace(&target.base_url, target).await;
        let url = format!("{}{}", target.base_url.trim_end_matches('/'), r.path);
        let mut req =
            self.http.request(method, url).timeout(Duration::from_millis(target.timeout_ms)).body(r.body.clone());
        for (k, v) in &r.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let body = resp.text().await?;
        Ok(wit::ErpResponse { status, headers, body })
    }

    fn backoff(&self, attempts: u32, document_id: &str) -> Duration {
        let base = self.config.backoff_initial_ms.saturating_mul(1u64 << attempts.saturating_sub(1).min(20));
        let capped = base.min(self.config.backoff_max_ms);
        // ±20 % jitter, spread by document so retries of many documents do not align.
        let spread = document_id.bytes().fold(attempts as u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)) % 41;
        Duration::from_millis(capped * (80 + spread) / 100)
    }

    async fn record(&self, key: &[u8], mut entry: OutboxEntry, outcome: Attempt) -> Result<(), StoreError> {
        let now = self.clock.now();
        entry.attempts += 1;
        match outcome {
            Attempt::Posted(number) => {
                tracing::info!(tenant = %entry.tenant, document = %entry.document_id, erp_number = %number, "posted");
                self.finish(key, &entry, PostingStatus::Posted, Some(number), None, now)?;
            }
            Attempt::Rejected { code, field, message } => {
                let at = field.as_ref().map(|f| format!(" at {f}")).unwrap_or_default();
                let error = format!("{code}{at}: {message}");
                tracing::warn!(tenant = %entry.tenant, document = %entry.document_id, %error, "rejected by the ERP");
                let rejection = Rejection::classify(&code, field, message, now);
                self.finish(key, &entry, PostingStatus::Rejected, None, Some((error, rejection)), now)?;
            }
            Attempt::Retry { error, ambiguous, retry_after } => {
                let wait = retry_after.unwrap_or_else(|| self.backoff(entry.attempts, &entry.document_id));
                tracing::warn!(tenant = %entry.tenant, document = %entry.document_id, attempts = entry.attempts, %error, ?wait, "posting will be retried");
                entry.ambiguous |= ambiguous;
                entry.in_flight = false;
                entry.last_error = Some(error.clone());
                entry.next_attempt_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                self.store.put(&self.store.outbox, key, &entry)?;
                self.update_document(key, |d| {
                    d.state.attempts = entry.attempts;
                    d.state.last_error = Some(error.clone());
                })?;
            }
        }
        self.store.flush().await
    }

    fn update_document(&self, key: &[u8], f: impl Fn(&mut Document)) -> Result<(), StoreError> {
        if let Some(mut d) = self.store.get::<Document>(&self.store.documents, key)? {
            f(&mut d);
            self.store.put(&self.store.documents, key, &d)?;
        }
        Ok(())
    }

    /// Final state: document updated, ERP number indexed, outbox entry
    /// removed, atomically. A number the target already gave another
    /// document is not recorded: the document becomes an exception
    /// ([`DUPLICATE_ERP_NUMBER`], naming both documents).
    fn finish(
        &self,
        key: &[u8],
        entry: &OutboxEntry,
        status: PostingStatus,
        number: Option<String>,
        rejected: Option<(String, Rejection)>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let s = &self.store;
        // sled applies a transaction tree by tree, in this order, and plain
        // reads can see it half-applied: the outbox entry goes last, so
        // whoever sees it gone sees the document, its number and its
        // exception-queue entry too.
        let trees = (&s.documents, &s.erp_numbers, &s.exceptions, &s.outbox);
        let result = trees.transaction(|(documents, numbers, exceptions, outbox)| {
            let abort = |m: String| ConflictableTransactionError::Abort(m);
            let bytes =
                documents.get(key)?.ok_or_else(|| abort(format!("document {} is missing", entry.document_id)))?;
            let mut doc: Document = serde_json::from_slice(&bytes).map_err(|e| abort(e.to_string()))?;
            doc.state.status = status;
            doc.state.attempts = entry.attempts;
            doc.state.last_error = rejected.as_ref().map(|(e, _)| e.clone());
            doc.state.rejection = rejected.as_ref().map(|(_, r)| r.clone());
            let mut status = status;
            if let Some(n) = &number {
                let number_key = store::key(&[&entry.tenant, n, &entry.target]);
                match numbers.get(&number_key)? {
                    // An ERP number identifies one document per target: a
                    // second document answered with it is an exception.
                    Some(other) if other.as_ref() != entry.document_id.as_bytes() => {
                        let other = String::from_utf8_lossy(&other).into_owned();
                        tracing::warn!(tenant = %entry.tenant, document = %entry.document_id, other_document = %other,
                            erp_number = %n, target = %entry.target,
                            "the ERP answered a number it gave another document; held as an exception");
                        let message = format!(
                            "the ERP answered number {n}, which it gave document {other} on target {} before; \
                             check both in the ERP (one number, two invoices?), then retry",
                            entry.target
                        );
                        let rejection =
                            Rejection::classify(DUPLICATE_ERP_NUMBER, Some("erp_document_number".into()), message, now);
                        doc.state.last_error = Some(format!("{DUPLICATE_ERP_NUMBER}: {}", rejection.message));
                        doc.state.rejection = Some(rejection);
                        status = PostingStatus::Rejected;
                        doc.state.status = status;
                    }
                    _ => {
                        doc.state.erp_document_number = Some(n.clone());
                        doc.state.posted_at = Some(now);
                        numbers.insert(number_key, entry.document_id.as_bytes())?;
                    }
                }
            }
            documents.insert(key, serde_json::to_vec(&doc).map_err(|e| abort(e.to_string()))?)?;
            if status == PostingStatus::Rejected {
                exceptions.insert(key, &[][..])?;
            }
            outbox.remove(key)?;
            Ok(())
        });
        result.map_err(|e| match e {
            sled::transaction::TransactionError::Abort(m) => StoreError::Aborted(m),
            sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
        })
    }
}

/// What one attempt needs to ask its mapper: the plugin, the document and
/// the target as the mapper sees them. Mapper calls run on the blocking pool.
struct Call<'a> {
    poster: &'a Poster,
    target: &'a ErpTargetConfig,
    mapper: &'a Arc<Plugin>,
    doc: wit::PostingDocument,
    wtarget: wit::TargetConfig,
}

impl Call<'_> {
    /// Runs `f` with the runtime, the mapper, the document and the target
    /// on the blocking pool.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Runtime, &Plugin, &wit::PostingDocument, &wit::TargetConfig) -> Result<R, PluginError>
        + Send
        + 'static,
    ) -> Result<R, CallError> {
        let (registry, plugin, doc, target) =
            (self.poster.registry.clone(), self.mapper.clone(), self.doc.clone(), self.wtarget.clone());
        let mapper = plugin.name.clone();
        tokio::task::spawn_blocking(move || f(registry.runtime(), &plugin, &doc, &target))
            .await
            .map_err(CallError::Task)?
            .map_err(|source| CallError::Mapper { mapper, source })
    }

    /// Looks the document up in the ERP, if its mapper has a look-up.
    async fn look_up(&self) -> Result<wit::LookupOutcome, CallError> {
        let Some(request) = self.run(|rt, p, d, t| rt.lookup_request(p, d, t)).await? else {
            return Ok(wit::LookupOutcome::Absent);
        };
        let stored = StoredRequest::from(request);
        let method = parse_method(&stored)?;
        let response = self.poster.send(self.target, method, &stored).await.map_err(CallError::Send)?;
        self.run(move |rt, p, d, t| rt.read_lookup(p, d, t, &response)).await
    }

    /// Reads the ERP's answer to one request of the conversation.
    async fn read_response(&self, request: StoredRequest, response: wit::ErpResponse) -> Result<wit::Step, CallError> {
        let request = wit::ErpRequest::from(request);
        self.run(move |rt, p, d, t| rt.read_response(p, d, t, &request, &response)).await
    }
}

impl From<wit::ErpRequest> for StoredRequest {
    fn from(r: wit::ErpRequest) -> Self {
        StoredRequest { method: r.method, path: r.path, headers: r.headers, body: r.body }
    }
}

impl From<StoredRequest> for wit::ErpRequest {
    fn from(r: StoredRequest) -> Self {
        wit::ErpRequest { method: r.method, path: r.path, headers: r.headers, body: r.body }
    }
}

/// The request's HTTP method. Mapper output is checked when mapped, so an
/// error here means a damaged entry: the document is rejected, not guessed at.
fn parse_method(r: &StoredRequest) -> Result<reqwest::Method, BadMethod> {
    reqwest::Method::from_bytes(r.method.as_bytes()).map_err(|_| BadMethod(r.method.clone()))
}

/// A stored request whose method is no HTTP method.
#[derive(Debug, thiserror::Error)]
#[error("invalid-output at method: {0:?} is not an HTTP method")]
struct BadMethod(String);

/// Why one mapper call (or the look-up it needs) of an attempt failed.
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("mapper task: {0}")]
    Task(tokio::task::JoinError),
    #[error("mapper {mapper}: {}: {source}", source.code())]
    Mapper { mapper: String, source: PluginError },
    #[error(transparent)]
    Method(#[from] BadMethod),
    #[error("{0}")]
    Send(reqwest::Error),
}

fn header<'a>(r: &'a wit::ErpResponse, name: &str) -> Option<&'a str> {
    r.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
