//! Counters a session keeps about itself.

/// Counters of what a session has done and dropped. Cheap to copy; the simulator sums
/// them over campaigns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionStats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Handshakes acknowledged.
    pub opens: u64,
    /// Open connections lost.
    pub disconnects: u64,
    /// Inputs of an older (or unknown) generation, ignored.
    pub stale_inputs: u64,
    /// Data frames received on the current connection.
    pub frames_received: u64,
    /// Frames handed to the adapter.
    pub frames_sent: u64,
    /// Application messages delivered.
    pub messages: u64,
    /// Requests answered successfully.
    pub requests_ok: u64,
    /// Requests answered with an error.
    pub requests_remote_error: u64,
    /// Requests that timed out.
    pub requests_timed_out: u64,
    /// Requests failed by a lost connection.
    pub requests_disconnected: u64,
    /// Requests failed by `close`, the session failing, or a queue drop.
    pub requests_aborted: u64,
    /// Stream events delivered (including gap and end events).
    pub stream_events: u64,
    /// Stream events dropped as duplicates.
    pub duplicates_dropped: u64,
    /// Stream events dropped as older than the stream's last one.
    pub stale_stream_events: u64,
    /// Stream events suppressed after their stream completed.
    pub late_events: u64,
    /// Gaps in stream sequence numbers.
    pub gaps: u64,
    /// Stream events for no known stream.
    pub unsolicited: u64,
    /// Queued messages dropped.
    pub messages_dropped: u64,
    /// Protocol violations.
    pub violations: u64,
    /// Writes slower than the warning.
    pub slow_writes: u64,
    /// Clock jumps detected.
    pub clock_jumps: u64,
}
