//! The rules of one simulated link, written once for the three places that run a
//! network: the value [`World`](crate::World), the driven world
//! ([`driven`](crate::driven)) and the [`server_role`](crate::server_role). Each keeps its
//! own event loop and its own per-connection state; what happens to a frame between the
//! two ends is decided here:
//!
//! - how long one trip takes ([`Latency`]), and when a frame arrives: never before one
//!   sent earlier in the same direction ([`Lane`]);
//! - what becomes of a write: the remote's kernel takes it and it completes after the
//!   write latency, unless the remote stopped reading; on a half-open link the frame is
//!   then lost ([`write`](fn@write), [`write_done`]);
//! - what the receiving end's WebSocket library answers on its own: a pong to a ping, the
//!   close frame echoed ([`answer`]);
//! - what a machine is handed when a frame reaches it ([`received`]).
//!
//! What the receiving codec refuses is the [`link_model`](crate::link_model)'s; a host's
//! sleep is [`host`](crate::host)'s; the order of deliveries due at the same instant is the
//! [`queue`](crate::queue)'s.

use std::time::Duration;

use tether_core::{CloseCode, ConnId, Input};

use crate::wire::Wire;

/// The one-way delay of a link: `base` plus a uniform draw in `[0, jitter]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Latency {
    /// The fixed part of every trip.
    pub(crate) base: Duration,
    /// The most a trip adds to `base`.
    pub(crate) jitter: Duration,
}

impl Latency {
    /// One trip, drawn from the network's generator. It draws even when `jitter` is zero,
    /// so that the generator's sequence does not depend on the jitter in force (a
    /// `Latency` fault may set it to zero and back).
    pub(crate) fn trip(&self, rng: &mut fastrand::Rng) -> Duration {
        self.base + self.jitter.mul_f64(rng.f64())
    }
}

/// One direction of one link. TCP keeps order: a frame never arrives before one sent
/// earlier in the same direction, even when its own trip was drawn shorter.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lane {
    /// When the latest frame sent this way arrives.
    last: Duration,
}

impl Lane {
    /// When a frame sent at `sent` whose trip takes `trip` arrives: at `sent + trip`, or
    /// with the latest earlier frame if that one arrives later.
    pub(crate) fn arrival(&mut self, sent: Duration, trip: Duration) -> Duration {
        let at = (sent + trip).max(self.last);
        self.last = at;
        at
    }

    /// When a frame that may overtake earlier ones (under `Fault::Reorder`) arrives: at
    /// `sent + trip` as drawn. Frames sent after it still wait for it.
    pub(crate) fn overtaking(&mut self, sent: Duration, trip: Duration) -> Duration {
        let at = sent + trip;
        self.last = self.last.max(at);
        at
    }
}

/// What becomes of a frame written toward a remote end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Write {
    /// The remote's kernel took it: the write completes at `done`. `delivered` is false on
    /// a half-open link, where the frame goes nowhere (nobody is told).
    Taken {
        /// When the writer hears the write completed.
        done: Duration,
        /// Whether the frame travels on to the remote end.
        delivered: bool,
    },
    /// The remote stopped reading: its buffers are full and the write does not complete.
    Waits,
}

/// What becomes of a frame written at `now`, when the remote end is `reading` or not and
/// the link is `half_open` or not. A remote that does not read holds the write up first:
/// a half-open link loses the frame only once a kernel took it.
pub(crate) fn write(
    now: Duration,
    write_latency: Duration,
    reading: bool,
    half_open: bool,
) -> Write {
    if reading {
        Write::Taken {
            done: write_done(now, write_latency),
            delivered: !half_open,
        }
    } else {
        Write::Waits
    }
}

/// When a write taken at `now` is reported complete: a kernel accepts a write at once, and
/// the writer hears of it `write_latency` later (a failed write is reported as late).
pub(crate) fn write_done(now: Duration, write_latency: Duration) -> Duration {
    now + write_latency
}

/// What the receiving end's WebSocket library answers to `frame` on its own, before the
/// application sees anything: a pong to a ping, and to a close frame the same close
/// frame, which ends the close handshake. Data frames and pongs get no answer.
pub(crate) fn answer(frame: &Wire) -> Option<Wire> {
    match frame {
        Wire::Ping => Some(Wire::Pong),
        Wire::Close(code, reason) => Some(Wire::Close(*code, reason.clone())),
        Wire::Text(_) | Wire::Binary(_) | Wire::Pong => None,
    }
}

/// The input a machine is handed when `frame` reaches it on `conn`: a frame, or for a
/// close frame the end of the transport with its code and reason (no code: the
/// connection dropped without a close frame).
pub(crate) fn received(conn: ConnId, frame: Wire) -> Input {
    match frame.into_frame() {
        Ok(frame) => Input::FrameReceived { conn, frame },
        Err((code, reason)) => Input::TransportClosed {
            conn,
            code: code.map(CloseCode),
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tether_core::InFrame;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_frame_never_overtakes_an_earlier_one_in_its_direction() {
        let mut lane = Lane::default();
        assert_eq!(lane.arrival(ms(0), ms(30)), ms(30));
        assert_eq!(
            lane.arrival(ms(5), ms(20)),
            ms(30),
            "its own trip was shorter"
        );
        assert_eq!(lane.arrival(ms(40), ms(20)), ms(60));
    }

    #[test]
    fn a_reordered_frame_may_overtake_but_later_ones_wait_for_it() {
        let mut lane = Lane::default();
        assert_eq!(lane.arrival(ms(0), ms(30)), ms(30));
        assert_eq!(lane.overtaking(ms(5), ms(20)), ms(25), "overtakes");
        assert_eq!(lane.overtaking(ms(6), ms(60)), ms(66));
        assert_eq!(
            lane.arrival(ms(7), ms(20)),
            ms(66),
            "waits for the slow one"
        );
    }

    #[test]
    fn a_trip_is_the_base_plus_at_most_the_jitter() {
        let mut rng = fastrand::Rng::with_seed(1);
        let fixed = Latency {
            base: ms(20),
            jitter: Duration::ZERO,
        };
        assert_eq!(fixed.trip(&mut rng), ms(20));
        let jittered = Latency {
            base: ms(20),
            jitter: ms(10),
        };
        for _ in 0..100 {
            let t = jittered.trip(&mut rng);
            assert!(t >= ms(20) && t <= ms(30), "{t:?}");
        }
    }

    #[test]
    fn a_stopped_reader_holds_writes_and_a_half_open_link_loses_them() {
        let taken = |delivered| Write::Taken {
            done: ms(10) + Duration::from_micros(100),
            delivered,
        };
        let wl = Duration::from_micros(100);
        assert_eq!(write(ms(10), wl, true, false), taken(true));
        assert_eq!(write(ms(10), wl, true, true), taken(false));
        assert_eq!(write(ms(10), wl, false, false), Write::Waits);
        assert_eq!(write(ms(10), wl, false, true), Write::Waits);
    }

    #[test]
    fn the_library_answers_pings_and_closes_and_nothing_else() {
        assert_eq!(answer(&Wire::Ping), Some(Wire::Pong));
        let close = Wire::Close(Some(1001), "bye".into());
        assert_eq!(answer(&close), Some(close));
        assert_eq!(answer(&Wire::Pong), None);
        assert_eq!(answer(&Wire::text("hi")), None);
    }

    #[test]
    fn a_close_frame_arrives_as_the_end_of_the_transport() {
        let conn = ConnId::from_raw(3);
        assert_eq!(
            received(conn, Wire::Close(Some(1000), "done".into())),
            Input::TransportClosed {
                conn,
                code: Some(CloseCode(1000)),
                reason: "done".into()
            }
        );
        assert_eq!(
            received(conn, Wire::Close(None, String::new())),
            Input::TransportClosed {
                conn,
                code: None,
                reason: String::new()
            }
        );
        assert_eq!(
            received(conn, Wire::Binary(Bytes::from_static(b"\x01"))),
            Input::FrameReceived {
                conn,
                frame: InFrame::Binary(Bytes::from_static(b"\x01"))
            }
        );
    }
}
