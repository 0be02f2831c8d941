//! [`Role`]: what the server and the client are to a board, so that one loop runs either.

use embedded_nal::TcpClientStack;

use crate::error::Error;
use crate::event::Event;
use crate::time::Instant;

/// An echo role, [`EchoServer`](crate::EchoServer) or [`EchoClient`](crate::EchoClient), as a
/// board's loop runs it: poll it with the stack and the time, hand its events to the screen
/// and the logs, sleep until the network wakes the board or [`next_deadline`] comes.
///
/// ```no_run
/// use echo::embedded_graphics::{pixelcolor::BinaryColor, prelude::DrawTarget};
/// use echo::embedded_nal::TcpClientStack;
/// use echo::{Instant, Layout, Role, Screen};
///
/// /// Runs `role` until it is finished, drawing `screen` on `display` as events change it.
/// fn run<S, R, L, D>(
///     stack: &mut S,
///     role: &mut R,
///     screen: &mut Screen<L>,
///     display: &mut D,
///     now: impl Fn() -> Instant,
///     mut sleep_until: impl FnMut(Option<Instant>),
/// ) -> Result<(), echo::Error<S::Error>>
/// where
///     S: TcpClientStack,
///     R: Role<S>,
///     L: Layout,
///     D: DrawTarget<Color = BinaryColor>,
/// {
///     while !role.is_finished() {
///         let progress = role.poll(stack, now(), |event| screen.update(&event))?;
///         // The echo path never waits for the display: draw after the poll, only what changed.
///         let _ = screen.draw(display);
///         if !progress {
///             sleep_until(role.next_deadline());
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// [`next_deadline`]: Role::next_deadline
pub trait Role<S>
where
    S: TcpClientStack,
{
    /// Does all the work that can be done now without waiting and reports it to `on_event`;
    /// returns whether anything happened (poll again at once if so; otherwise wait for the
    /// network or [`next_deadline`](Role::next_deadline)).
    ///
    /// Returns `Err` only when the role cannot go on and the caller must decide what to do:
    /// the client's last allowed connection attempt failed (it is then finished). The server
    /// never returns `Err`: a failing listener is an [`Event::ListenFailed`] and is opened
    /// again with backoff, a failing connection ends alone. So `?` on `poll` is right.
    fn poll<F>(
        &mut self,
        stack: &mut S,
        now: Instant,
        on_event: F,
    ) -> Result<bool, Error<S::Error>>
    where
        F: FnMut(Event<'_, S::Error>);

    /// Closes every connection (each reported as [`Event::Closed`] with
    /// [`CloseReason::Shutdown`](crate::CloseReason::Shutdown)) and starts over on the next
    /// `poll`: the server listens again, the client connects again (even when it was
    /// finished). For a board whose network address changed, where the old connections can
    /// never work again.
    fn restart<F>(&mut self, stack: &mut S, on_event: F)
    where
        F: FnMut(Event<'_, S::Error>);

    /// Closes every connection and the listening socket; the role is then finished.
    fn shutdown<F>(&mut self, stack: &mut S, on_event: F)
    where
        F: FnMut(Event<'_, S::Error>);

    /// When the role next needs a `poll` even if the network stays silent (an idle timeout,
    /// a backoff, a connect timeout), so that a board can sleep until then.
    fn next_deadline(&self) -> Option<Instant>;

    /// Counters and the connections open now.
    fn stats(&self) -> Stats;

    /// Whether the role is done: shut down, or a client whose connection ended (or whose
    /// attempts ran out) and that is not configured to reconnect. `poll` then does nothing.
    fn is_finished(&self) -> bool;
}

/// What a role has done, for a board's summary line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Connections open now.
    pub open: usize,
    /// The most connections the role holds at once (the server's slots; 1 for the client).
    pub capacity: usize,
    /// Connections established since the role was created (accepted, or connected).
    pub connections: u32,
    /// Bytes read from peers since the role was created.
    pub bytes_received: u64,
    /// Bytes handed back to the stack since the role was created.
    pub bytes_sent: u64,
}

impl Stats {
    /// Counters at zero for a role that holds up to `capacity` connections.
    pub const fn new(capacity: usize) -> Self {
        Stats {
            open: 0,
            capacity,
            connections: 0,
            bytes_received: 0,
            bytes_sent: 0,
        }
    }
}
