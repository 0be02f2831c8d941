//! The board's loop for the async engine: [`Board<AsyncStack>::run`] and
//! [`Board<AsyncStack>::serve`].

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn, Future};
use std::task::Waker;

use async_io::Timer;
use echo::asynch::{AsyncEchoServer, AsyncRole, Clock};
use echo::ServerConfig;
use futures_lite::future::or;

use super::*;

/// The most clients [`Board::serve`] serves at once: the async server's futures are polled
/// together on every wake-up, so they are kept few (`--engine nb` has no such limit).
pub const ASYNC_MAX_CLIENTS: usize = 64;

/// The server sizes (`N` of [`AsyncEchoServer`]) that [`Board::serve`] is built for: each is
/// a copy of the server's code, so every size up to 8 (exact, no memory beyond what is asked)
/// and powers of two above (at most twice the buffer memory asked for).
const SERVER_SIZES: [usize; 11] = [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, ASYNC_MAX_CLIENTS];

/// The server size for `max_clients`: the smallest that holds them.
fn server_size(max_clients: usize) -> Option<usize> {
    SERVER_SIZES
        .into_iter()
        .find(|&size| size >= max_clients)
        .filter(|_| max_clients > 0)
}

/// A server of more slots than the stack's accept limit lets serve: its stats say the limit.
struct Limited<R> {
    role: R,
    capacity: usize,
}

impl<R: AsyncRole<AsyncStack>> AsyncRole<AsyncStack> for Limited<R> {
    type Error = R::Error;
    const CONNECTIONS: usize = R::CONNECTIONS;

    async fn run_until<K, X, F>(
        &mut self,
        stack: &AsyncStack,
        clock: &K,
        stop: X,
        on_event: F,
    ) -> Result<(), echo::Error<R::Error>>
    where
        K: Clock,
        X: Future,
        F: FnMut(Event<'_, R::Error>),
    {
        self.role.run_until(stack, clock, stop, on_event).await
    }

    fn stats(&self) -> Stats {
        let mut stats = self.role.stats();
        stats.capacity = self.capacity;
        stats
    }
}

/// A one-thread signal between the futures of one run: raised by the event callback, awaited
/// by the display or the stop.
#[derive(Default)]
struct Flag {
    raised: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Flag {
    fn raise(&self) {
        self.raised.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Completes once raised; `lower` lowers it again for the next wait.
    async fn raised(&self, lower: bool) {
        poll_fn(|cx| match self.raised.get() {
            true => {
                self.raised.set(!lower);
                Poll::Ready(())
            }
            false => {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

impl Board<AsyncStack> {
    /// A handle that stops [`run`](Self::run) from another thread (not from a signal handler:
    /// see [`Stopper::stop`]).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            signal: Arc::clone(&self.stop),
            notifier: None,
        }
    }

    /// Runs the async `role` until it is done, `on_event` breaks, or the [`Stopper`] stops it
    /// (it then closes every connection), and shows the last picture: the async counterpart
    /// of [`Board::run`], on async-io's executor ([`async_io::block_on`], which also waits on
    /// the sockets), on this thread.
    ///
    /// Each event goes to `on_event` and updates `screen` in the role's callback, never
    /// awaited; the display is drawn by a future of its own beside the role, when the screen
    /// changed and at most [`DEFAULT_FRAME_INTERVAL`] apart, as the non-blocking loop paces
    /// it. Its summary line counts the stack's bytes (the async roles give their counters
    /// only when they return). With no display the screen is not even updated.
    ///
    /// Returns [`RunError::Role`] when the client gave up, and [`RunError::Board`] when the
    /// display failed (the role is stopped first, closing its connections).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use echo::asynch::AsyncEchoServer;
    /// use echo::{Screen, ServerConfig};
    /// use echo_std::{AsyncStack, Board, DisplayMode};
    ///
    /// let mut board = Board::new(AsyncStack::new(), DisplayMode::Auto.open());
    /// let mut buffer = [0; 3 * 1024];
    /// let mut server = AsyncEchoServer::<3>::new(ServerConfig::new(), &mut buffer);
    /// board.run(&mut server, &mut Screen::server(), |_event| std::ops::ControlFlow::Continue(()))?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn run<R, L>(
        &mut self,
        role: &mut R,
        screen: &mut Screen<L>,
        mut on_event: impl FnMut(&Event<'_, Error>) -> ControlFlow<()>,
    ) -> Result<(), RunError>
    where
        R: AsyncRole<AsyncStack, Error = Error>,
        L: Layout,
    {
        let Board {
            stack,
            oled,
            clock,
            stop,
        } = self;
        let stack = &*stack;
        let shows_screen = oled.is_shown();
        let capacity = role.stats().capacity;
        let bytes_before = (stack.bytes_received(), stack.bytes_sent());
        let screen = RefCell::new(screen);
        let open = Cell::new(0);
        let changed = Flag::default();
        let halt = Flag::default();
        let mut drawn = Ok(());

        let outcome = {
            let stop = or(stop.stopped(), halt.raised(false));
            let echo = role.run_until(stack, clock, stop, |event| {
                if on_event(&event).is_break() {
                    halt.raise();
                }
                if let Event::Opened { open: now, .. } | Event::Closed { open: now, .. } = event {
                    open.set(now);
                }
                if shows_screen {
                    screen.borrow_mut().update(&event);
                    changed.raise();
                }
            });
            let display = async {
                loop {
                    changed.raised(true).await;
                    if let Some(allowed) = oled.limit.next_allowed() {
                        Timer::at(allowed).await;
                    }
                    let mut live = Stats::new(capacity);
                    live.open = open.get();
                    live.bytes_received = stack.bytes_received() - bytes_before.0;
                    live.bytes_sent = stack.bytes_sent() - bytes_before.1;
                    let shown = oled.show(&mut screen.borrow_mut(), || summary(live));
                    if let Err(e) = shown {
                        // The role closes its connections; the error is returned after.
                        drawn = Err(e);
                        halt.raise();
                        return pending().await;
                    }
                }
            };
            async_io::block_on(or(echo, display))
        };
        let stats = role.stats();
        drawn
            .and_then(|()| oled.finish(&mut screen.borrow_mut(), || summary(stats)))
            .map_err(|e| RunError::Board(Error::new("show the display", e)))?;
        outcome.map_err(RunError::Role)
    }

    /// Runs an [`AsyncEchoServer`] for up to `max_clients` clients at once, `buffer_size`
    /// bytes of echo buffer each, as [`run`](Self::run) does: the async server for a client
    /// count chosen at run time (`echo-std server --engine async --max-clients N`).
    ///
    /// The server's `N` is a constant; this runs the smallest of the sizes it is built for
    /// that holds `max_clients` (each size up to 8, then 16, 32 and [`ASYNC_MAX_CLIENTS`]), and
    /// when that size is larger, the stack's accept limit
    /// ([`AsyncStack::with_accept_limit`]) keeps the server to `max_clients` connections: the
    /// slots beyond it wait without accepting, and further clients wait in the backlog, as
    /// with the non-blocking server. The buffer is the size's share each: exactly
    /// `max_clients * buffer_size` bytes up to 8 clients, less than twice that above.
    ///
    /// Returns [`RunError::Board`] with `InvalidInput` when `max_clients` is 0 or above
    /// [`ASYNC_MAX_CLIENTS`], or `buffer_size` is 0.
    pub fn serve<L: Layout>(
        &mut self,
        config: ServerConfig,
        max_clients: usize,
        buffer_size: usize,
        screen: &mut Screen<L>,
        on_event: impl FnMut(&Event<'_, Error>) -> ControlFlow<()>,
    ) -> Result<(), RunError> {
        let invalid = |message: String| {
            let error = io::Error::new(io::ErrorKind::InvalidInput, message);
            RunError::Board(Error::new("serve", error))
        };
        let size = server_size(max_clients).ok_or_else(|| {
            invalid(format!(
                "the async server serves 1 to {ASYNC_MAX_CLIENTS} clients at once, not \
                 {max_clients}"
            ))
        })?;
        if buffer_size == 0 {
            return Err(invalid("an echo buffer needs at least one byte".into()));
        }
        let bytes = size
            .checked_mul(buffer_size)
            .ok_or_else(|| invalid(format!("{size} echo buffers of {buffer_size} bytes")))?;
        let mut buffer = vec![0u8; bytes];
        let unlimited = self.stack.set_accept_limit(Some(max_clients));
        macro_rules! serve_with {
            ($($n:literal)*) => {
                match size {
                    $($n => self.run(
                        &mut Limited {
                            role: AsyncEchoServer::<$n>::new(config, &mut buffer),
                            capacity: max_clients,
                        },
                        screen,
                        on_event,
                    ),)*
                    _ => unreachable!("{size} is not one of SERVER_SIZES"),
                }
            };
        }
        let outcome = serve_with!(1 2 3 4 5 6 7 8 16 32 64);
        self.stack.set_accept_limit(unlimited);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{assert_gave_up, closed_port, serve_one_ping, stops_when_told};
    use super::*;
    use echo::asynch::AsyncEchoClient;
    use echo::ClientConfig;
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
    use std::sync::mpsc;
    use std::thread;

    fn loopback_board() -> Board<AsyncStack> {
        let stack = AsyncStack::new().with_bind_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        Board::new(stack, Display::None)
    }

    #[test]
    fn server_sizes_hold_every_client_count_they_are_asked_for() {
        assert_eq!(server_size(0), None);
        assert_eq!(server_size(3), Some(3));
        assert_eq!(server_size(8), Some(8));
        assert_eq!(server_size(9), Some(16));
        assert_eq!(server_size(33), Some(64));
        assert_eq!(server_size(ASYNC_MAX_CLIENTS), Some(ASYNC_MAX_CLIENTS));
        assert_eq!(server_size(ASYNC_MAX_CLIENTS + 1), None);
        for clients in 1..=ASYNC_MAX_CLIENTS {
            let size = server_size(clients).unwrap();
            assert!(size >= clients && size < 2 * clients, "{clients} -> {size}");
        }
    }

    #[test]
    fn run_echoes_until_told_to_stop_then_closes_every_connection() {
        let mut board = loopback_board();
        let mut buffer = [0; 2 * 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = AsyncEchoServer::<2>::new(config, &mut buffer);
        serve_one_ping(|on_event| board.run(&mut server, &mut Screen::server(), on_event));
        let stats = server.stats();
        assert_eq!((stats.connections, stats.open), (1, 0));
        assert_eq!((stats.bytes_received, stats.bytes_sent), (4, 4));
    }

    #[test]
    fn a_stopper_ends_a_waiting_run_from_another_thread() {
        let mut board = loopback_board();
        let mut buffer = [0; 64];
        let config = ServerConfig::new().with_port(0);
        let mut server = AsyncEchoServer::<1>::new(config, &mut buffer);
        stops_when_told(board.stopper(), || {
            board.run(&mut server, &mut Screen::server(), |_| {
                ControlFlow::Continue(())
            })
        });
    }

    #[test]
    fn a_display_that_fails_stops_the_role_and_is_the_error() {
        let path = std::env::temp_dir()
            .join(format!("echo-std-no-such-dir-{}", std::process::id()))
            .join("oled.png");
        let stack = AsyncStack::new().with_bind_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut board = Board::new(stack, DisplayMode::Png(path).open());
        let mut buffer = [0; 64];
        let mut server = AsyncEchoServer::<1>::new(ServerConfig::new().with_port(0), &mut buffer);
        let error = board
            .run(&mut server, &mut Screen::server(), |_| {
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert!(matches!(error, RunError::Board(_)), "{error:?}");
        assert!(
            error.to_string().starts_with("show the display: "),
            "{error}"
        );
    }

    #[test]
    fn a_client_that_gives_up_is_a_role_error() {
        let mut board = loopback_board();
        let remote = closed_port();
        let mut buffer = [0; 64];
        let mut client = AsyncEchoClient::new(ClientConfig::new(remote), &mut buffer);
        let outcome = board.run(&mut client, &mut Screen::client(), |_| {
            ControlFlow::Continue(())
        });
        assert_gave_up(outcome, remote);
    }

    /// Runs `serve` for `max_clients` in a thread; its address, and a stopper.
    fn serving(max_clients: usize) -> (SocketAddr, Stopper, thread::JoinHandle<Stats>) {
        let (address, listening) = mpsc::channel();
        let (stopper, stopper_sent) = mpsc::channel();
        let running = thread::spawn(move || {
            let mut board = loopback_board();
            stopper.send(board.stopper()).unwrap();
            let mut last = Stats::new(0);
            let config = ServerConfig::new().with_port(0);
            board
                .serve(config, max_clients, 16, &mut Screen::server(), |event| {
                    if let Event::Listening { local } = event {
                        address.send(*local).unwrap();
                    }
                    if let Event::Opened { open, .. } = event {
                        last.open = last.open.max(*open);
                    }
                    ControlFlow::Continue(())
                })
                .unwrap();
            last
        });
        let stopper = stopper_sent.recv().unwrap();
        let address = listening.recv_timeout(Duration::from_secs(10)).unwrap();
        (address, stopper, running)
    }

    fn echoes(stream: &mut TcpStream, message: &[u8]) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        stream.write_all(message).unwrap();
        let mut echo = vec![0; message.len()];
        stream.read_exact(&mut echo).is_ok() && echo == message
    }

    #[test]
    fn serve_holds_a_client_count_between_server_sizes_to_that_count() {
        // 9 clients: a server of 16 slots, 9 of which may hold a connection.
        let (address, stopper, running) = serving(9);
        let mut clients: Vec<TcpStream> = (0..9)
            .map(|_| TcpStream::connect(address).unwrap())
            .collect();
        for client in &mut clients {
            assert!(echoes(client, b"in"), "one of the 9 not served");
        }
        let mut tenth = TcpStream::connect(address).unwrap();
        assert!(!echoes(&mut tenth, b"late"), "served a 10th client");
        drop(clients.pop());
        let mut echo = [0; 4];
        tenth
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        tenth.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"late", "served once a slot was free");
        stopper.stop();
        assert_eq!(running.join().unwrap().open, 9);
    }

    #[test]
    fn serve_runs_every_server_size() {
        for size in SERVER_SIZES {
            let (address, stopper, running) = serving(size);
            let mut client = TcpStream::connect(address).unwrap();
            assert!(echoes(&mut client, b"hi"), "size {size}");
            stopper.stop();
            running.join().unwrap();
        }
    }

    #[test]
    fn serve_refuses_client_counts_it_has_no_size_for() {
        let mut board = loopback_board();
        for clients in [0, ASYNC_MAX_CLIENTS + 1] {
            let error = board
                .serve(
                    ServerConfig::new(),
                    clients,
                    16,
                    &mut Screen::server(),
                    |_| ControlFlow::Continue(()),
                )
                .unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("serve: the async server serves 1 to 64 clients at once, not {clients}")
            );
        }
        assert!(board
            .serve(ServerConfig::new(), 3, 0, &mut Screen::server(), |_| {
                ControlFlow::Continue(())
            })
            .is_err());
    }

    #[test]
    fn png_board_draws_the_async_server_screen_with_its_address() {
        let path =
            std::env::temp_dir().join(format!("echo-std-async-board-{}.png", std::process::id()));
        let stack = AsyncStack::new().with_bind_address(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut board = Board::new(stack, DisplayMode::Png(path.clone()).open());
        let stopper = board.stopper();
        let mut buffer = [0; 64];
        let mut server = AsyncEchoServer::<1>::new(ServerConfig::new().with_port(0), &mut buffer);
        let mut screen = Screen::server();
        let mut shown = None;
        board
            .run(&mut server, &mut screen, |event| {
                if let Event::Listening { local } = event {
                    shown = Some(*local);
                    stopper.stop();
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        let local = shown.expect("listening");
        assert_eq!(screen.line(0).to_string(), local.to_string());
        assert!(!screen.is_dirty(), "the last picture was drawn");
        let written = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let mut expected = FrameBuffer::new();
        let mut listening = Screen::server();
        let event: Event<'_, ()> = Event::Listening { local };
        listening.update(&event);
        listening.draw(&mut expected).unwrap();
        assert_eq!(
            written,
            crate::display::encode_png(&expected, crate::display::DEFAULT_PNG_SCALE).unwrap()
        );
    }
}
