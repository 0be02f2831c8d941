//! [`ServerLoops`]: the echo server as several poll loops, one a thread, on one port
//! (`echo-std server --threads N`), with one display and one summary.
//!
//! Each loop is a [`Board`] of its own (its [`StdStack`], its [`EchoServer`], no display)
//! running [`Board::run`] on its thread. Their stacks share one listening socket
//! ([`SharedListener`]), which gives each client to the loop that serves the fewest, so
//! `--max-clients` (split over the loops) stays the number of clients served at once.
//!
//! The main thread runs [`Board::run`] too, with the display and [`ServerLoops`] as its role:
//! its `poll` reports what the loops did (their events, copied across, with connection
//! numbers made unique and the open count made the total), its `stats` are theirs summed,
//! its `shutdown` stops them all and waits for them. So the screen, the summary, the logs and
//! SIGINT/SIGTERM work exactly as for one loop, and the loops never wait for the display.

use std::mem;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use echo::{
    CloseReason, ConnId, EchoServer, Event, Instant, Role, Screen, ServerConfig, Slot, Stats,
};

use crate::display::DEFAULT_FRAME_INTERVAL;
use crate::stack::lock;
use crate::{Board, Display, Error, Notifier, RunError, SharedListener, StdStack, Stopper};

/// How the loops of a [`ServerLoops`] are made.
#[derive(Clone, Copy, Debug)]
pub struct LoopsConfig {
    /// Loops, one a thread.
    pub threads: usize,
    /// Clients served at once by all the loops together (at least one a loop).
    pub max_clients: usize,
    /// Echo buffer per client, in bytes.
    pub buffer: usize,
    /// The echo server's configuration, the same for every loop.
    pub server: ServerConfig,
    /// Whether to copy every chunk received to the main thread ([`Event::Received`]: for a
    /// display or a trace log); otherwise only connections opening and closing and the
    /// listener's events cross.
    pub report_received: bool,
}

/// Several [`EchoServer`] loops on threads, as one [`Role`] for the main thread's
/// [`Board::run`]: see the [module documentation](self).
pub struct ServerLoops {
    shared: Arc<Shared>,
    loops: Vec<Loop>,
    /// Each loop's open connections, as its events last said.
    open: Vec<usize>,
    capacity: usize,
    /// The summary last reported, and when to look again while the loops are busy.
    last_stats: Stats,
    recheck_at: Option<Instant>,
    finished: bool,
    /// Why a loop stopped by itself, if one did.
    failure: Option<RunError>,
}

struct Loop {
    stopper: Stopper,
    notifier: Notifier,
    thread: Option<JoinHandle<Result<(), RunError>>>,
}

/// What the loops tell the main thread.
struct Shared {
    /// Events not yet reported, with the index of their loop.
    events: Mutex<Vec<(usize, Copied)>>,
    /// Each loop's counters, updated after each pass that moved something.
    stats: Vec<Mutex<Stats>>,
    restart: Vec<AtomicBool>,
    /// Wakes the main thread's board.
    notifier: Notifier,
}

impl Shared {
    fn post(&self, index: usize, event: Copied) {
        let mut events = lock(&self.events);
        let was_empty = events.is_empty();
        events.push((index, event));
        drop(events);
        if was_empty {
            // A failed wake-up only delays the report until the main thread's next turn.
            let _ = self.notifier.notify();
        }
    }
}

/// An event of a loop, copied to cross to the main thread.
enum Copied {
    Listening {
        local: SocketAddr,
    },
    ListenFailed {
        error: echo::Error<Error>,
        retry_in: echo::Duration,
    },
    Opened {
        conn: ConnId,
        peer: SocketAddr,
        open: usize,
    },
    Received {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    Closed {
        conn: ConnId,
        reason: CloseReason<Error>,
        open: usize,
    },
    /// The loop's `Board::run` returned (its result is its thread's).
    Stopped,
}

impl Copied {
    fn of(event: &Event<'_, Error>, report_received: bool) -> Option<Self> {
        Some(match event {
            Event::Listening { local } => Copied::Listening { local: *local },
            Event::ListenFailed { error, retry_in } => Copied::ListenFailed {
                error: (*error).clone(),
                retry_in: *retry_in,
            },
            Event::Opened { conn, peer, open } => Copied::Opened {
                conn: *conn,
                peer: *peer,
                open: *open,
            },
            Event::Received { conn, bytes } if report_received => Copied::Received {
                conn: *conn,
                bytes: bytes.to_vec(),
            },
            Event::Closed { conn, reason, open } => Copied::Closed {
                conn: *conn,
                reason: reason.clone(),
                open: *open,
            },
            _ => return None,
        })
    }
}

impl ServerLoops {
    /// Starts `config.threads` loops, each on a stack from `stack` (sharing one listening
    /// socket), with `config.max_clients` split over them; `notifier` wakes the board that
    /// will run the result (its [`StdStack::notifier`]).
    ///
    /// # Panics
    /// If there are fewer clients than loops, or no loop.
    pub fn spawn(
        config: LoopsConfig,
        mut stack: impl FnMut() -> Result<StdStack, Error>,
        notifier: Notifier,
    ) -> Result<Self, Error> {
        let threads = config.threads;
        assert!(
            threads >= 1 && config.max_clients >= threads,
            "every loop needs a client slot"
        );
        let capacities: Vec<usize> = (0..threads)
            .map(|index| {
                config.max_clients / threads + usize::from(index < config.max_clients % threads)
            })
            .collect();
        let listener = SharedListener::new(capacities.iter().copied());
        let shared = Arc::new(Shared {
            events: Mutex::new(Vec::new()),
            stats: capacities
                .iter()
                .map(|&capacity| Mutex::new(Stats::new(capacity)))
                .collect(),
            restart: (0..threads).map(|_| AtomicBool::new(false)).collect(),
            notifier,
        });
        let mut loops = ServerLoops {
            shared: Arc::clone(&shared),
            loops: Vec::new(),
            open: vec![0; threads],
            capacity: config.max_clients,
            last_stats: Stats::new(config.max_clients),
            recheck_at: None,
            finished: false,
            failure: None,
        };
        for (index, capacity) in capacities.into_iter().enumerate() {
            let stack = stack()?.with_shared_listener(listener.clone(), index);
            let notifier = stack.notifier();
            let mut board = Board::new(stack, Display::None);
            let stopper = board.stopper();
            let shared = Arc::clone(&shared);
            let thread = thread::Builder::new()
                .name(format!("loop {index}"))
                .spawn(move || {
                    let outcome = run_loop(&mut board, index, capacity, config, &shared);
                    shared.post(index, Copied::Stopped);
                    outcome
                })
                .map_err(|e| Error::new(format!("start loop {index}"), e))?;
            loops.loops.push(Loop {
                stopper,
                notifier,
                thread: Some(thread),
            });
        }
        Ok(loops)
    }

    /// Why a loop stopped by itself (its board failed), once [`Board::run`] returned.
    pub fn take_failure(&mut self) -> Option<RunError> {
        self.failure.take()
    }

    /// Reports the events the loops posted; whether there were any.
    fn report<F>(&mut self, on_event: &mut F) -> bool
    where
        F: FnMut(Event<'_, Error>),
    {
        let events = mem::take(&mut *lock(&self.shared.events));
        let threads = self.loops.len();
        for (index, event) in &events {
            // Unique over the loops, and the numbers of one loop when there is one.
            let conn = |conn: &ConnId| {
                ConnId(
                    conn.0
                        .wrapping_mul(threads as u32)
                        .wrapping_add(*index as u32),
                )
            };
            match event {
                Copied::Listening { local } => on_event(Event::Listening { local: *local }),
                Copied::ListenFailed { error, retry_in } => on_event(Event::ListenFailed {
                    error,
                    retry_in: *retry_in,
                }),
                Copied::Opened {
                    conn: id,
                    peer,
                    open,
                } => {
                    self.open[*index] = *open;
                    on_event(Event::Opened {
                        conn: conn(id),
                        peer: *peer,
                        open: self.open.iter().sum(),
                    });
                }
                Copied::Received { conn: id, bytes } => on_event(Event::Received {
                    conn: conn(id),
                    bytes,
                }),
                Copied::Closed {
                    conn: id,
                    reason,
                    open,
                } => {
                    self.open[*index] = *open;
                    on_event(Event::Closed {
                        conn: conn(id),
                        reason: reason.clone(),
                        open: self.open.iter().sum(),
                    });
                }
                Copied::Stopped => self.stopped(*index),
            }
        }
        !events.is_empty()
    }

    /// Loop `index` returned from its run: by itself only if its board failed, and then the
    /// server stops.
    fn stopped(&mut self, index: usize) {
        if self.finished {
            return;
        }
        if let Some(thread) = self.loops[index].thread.take() {
            let outcome = thread.join().unwrap_or_else(|_| {
                Err(RunError::Board(Error::new(
                    format!("loop {index}"),
                    std::io::Error::other("panicked"),
                )))
            });
            self.failure = outcome.err();
        }
        self.finished = true;
    }
}

impl Role<StdStack> for ServerLoops {
    /// Reports what the loops did since the last call. Never returns `Err`: a loop that
    /// fails stops the server, and [`take_failure`](ServerLoops::take_failure) says why.
    fn poll<F>(
        &mut self,
        _stack: &mut StdStack,
        now: Instant,
        mut on_event: F,
    ) -> Result<bool, echo::Error<Error>>
    where
        F: FnMut(Event<'_, Error>),
    {
        let reported = self.report(&mut on_event);
        // Bytes move without events: while they do, look again a frame later, so that the
        // summary keeps up; idle loops let the main thread sleep.
        let stats = self.stats();
        self.recheck_at = (stats != self.last_stats).then(|| now + DEFAULT_FRAME_INTERVAL);
        self.last_stats = stats;
        Ok(reported)
    }

    fn restart<F>(&mut self, _stack: &mut StdStack, _on_event: F)
    where
        F: FnMut(Event<'_, Error>),
    {
        for (restart, one) in self.shared.restart.iter().zip(&self.loops) {
            restart.store(true, Ordering::Release);
            // Wakes the loop; its events come through `poll`.
            let _ = one.notifier.notify();
        }
    }

    fn shutdown<F>(&mut self, _stack: &mut StdStack, mut on_event: F)
    where
        F: FnMut(Event<'_, Error>),
    {
        for one in &self.loops {
            one.stopper.stop();
        }
        for one in &mut self.loops {
            if let Some(thread) = one.thread.take() {
                if let Ok(Err(e)) = thread.join() {
                    self.failure.get_or_insert(e);
                }
            }
        }
        self.finished = true;
        // Every connection's `Closed`, posted before the loops returned.
        self.report(&mut on_event);
        self.last_stats = self.stats();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.recheck_at
    }

    fn stats(&self) -> Stats {
        let mut total = Stats::new(self.capacity);
        for stats in &self.shared.stats {
            let stats = *lock(stats);
            total.connections += stats.connections;
            total.bytes_received += stats.bytes_received;
            total.bytes_sent += stats.bytes_sent;
        }
        total.open = self.open.iter().sum();
        total
    }

    fn is_finished(&self) -> bool {
        self.finished
    }
}

impl Drop for ServerLoops {
    fn drop(&mut self) {
        for one in &self.loops {
            one.stopper.stop();
        }
        for one in &mut self.loops {
            if let Some(thread) = one.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl core::fmt::Debug for ServerLoops {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerLoops")
            .field("loops", &self.loops.len())
            .field("open", &self.open)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// One loop's thread: its echo server, headless, posting its events and its counters.
fn run_loop(
    board: &mut Board,
    index: usize,
    capacity: usize,
    config: LoopsConfig,
    shared: &Shared,
) -> Result<(), RunError> {
    let mut slots: Vec<Slot<_>> = (0..capacity).map(|_| Slot::new()).collect();
    let mut buffer = vec![0u8; capacity * config.buffer];
    let server = EchoServer::new(config.server, &mut slots, &mut buffer);
    let mut published = Published {
        server,
        index,
        shared,
    };
    board.run(&mut published, &mut Screen::server(), |event| {
        if let Some(copied) = Copied::of(event, config.report_received) {
            shared.post(index, copied);
        }
        ControlFlow::Continue(())
    })
}

/// A loop's echo server, publishing its counters after each pass that moved something, and
/// restarting when the main thread asks.
struct Published<'a, 'b> {
    server: EchoServer<'a, StdStack>,
    index: usize,
    shared: &'b Shared,
}

impl Role<StdStack> for Published<'_, '_> {
    fn poll<F>(
        &mut self,
        stack: &mut StdStack,
        now: Instant,
        mut on_event: F,
    ) -> Result<bool, echo::Error<Error>>
    where
        F: FnMut(Event<'_, Error>),
    {
        let restart = &self.shared.restart[self.index];
        if restart.load(Ordering::Acquire) && restart.swap(false, Ordering::AcqRel) {
            self.server.restart(stack, &mut on_event);
        }
        let progress = self.server.poll(stack, now, on_event)?;
        if progress {
            *lock(&self.shared.stats[self.index]) = self.server.stats();
        }
        Ok(progress)
    }

    fn restart<F>(&mut self, stack: &mut StdStack, on_event: F)
    where
        F: FnMut(Event<'_, Error>),
    {
        self.server.restart(stack, on_event);
    }

    fn shutdown<F>(&mut self, stack: &mut StdStack, on_event: F)
    where
        F: FnMut(Event<'_, Error>),
    {
        self.server.shutdown(stack, on_event);
        *lock(&self.shared.stats[self.index]) = self.server.stats();
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.server.next_deadline()
    }

    fn stats(&self) -> Stats {
        self.server.stats()
    }

    fn is_finished(&self) -> bool {
        self.server.is_finished()
    }
}
