//! The tutorial's client as a future: connect, greet, echo, reconnect if asked.

use core::future::Future;
use core::pin::pin;

use embassy_futures::select::{select, Either};
use embedded_io_async::Write;
use embedded_nal_async::TcpConnect;

use super::{Clock, Shared, Waited, LINGER};
use crate::addr::Address;
use crate::client::ClientConfig;
use crate::error::Error;
use crate::event::{CloseReason, Event};
use crate::role::Stats;
use crate::rules::after_disconnect;

/// An async TCP echo client over any embedded-nal-async [`TcpConnect`] stack: the same
/// [`ClientConfig`], events and rules as [`EchoClient`](crate::EchoClient) (greeting first,
/// connect timeout, idle timeout, reconnection with backoff). [`ClientConfig::zero_read`] does
/// not apply (see the module's stack contract).
///
/// ```no_run
/// # async fn run<C: echo::asynch::embedded_nal_async::TcpConnect, K: echo::asynch::Clock>(
/// #     stack: &C, clock: &K) -> Result<(), echo::Error<C::Error>> {
/// use echo::asynch::AsyncEchoClient;
/// use echo::ClientConfig;
///
/// let server = "192.168.4.1:5001".parse().unwrap();
/// let mut buffer = [0u8; echo::DEFAULT_BUFFER_SIZE];
/// let mut client = AsyncEchoClient::new(ClientConfig::new(server), &mut buffer);
/// client.run(stack, clock, |event| { /* the screen, the log */ }).await
/// # }
/// ```
pub struct AsyncEchoClient<'a> {
    config: ClientConfig<'a>,
    buffer: &'a mut [u8],
    stats: Stats,
}

impl<'a> AsyncEchoClient<'a> {
    /// A client echoing through `buffer`.
    ///
    /// # Panics
    /// If `buffer` is empty.
    pub fn new(config: ClientConfig<'a>, buffer: &'a mut [u8]) -> Self {
        assert!(!buffer.is_empty(), "the echo buffer cannot be empty");
        AsyncEchoClient {
            config,
            buffer,
            stats: Stats::new(1),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig<'a> {
        &self.config
    }

    /// Counters, as of the end of the last run.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs until the client is finished: [`run_until`](Self::run_until) a stop that never
    /// comes.
    pub async fn run<C, K, F>(
        &mut self,
        stack: &C,
        clock: &K,
        on_event: F,
    ) -> Result<(), Error<C::Error>>
    where
        C: TcpConnect,
        K: Clock,
        F: FnMut(Event<'_, C::Error>),
    {
        self.run_until(stack, clock, core::future::pending::<()>(), on_event)
            .await
    }

    /// Connects, greets and echoes; after the connection ends or an attempt fails, connects
    /// again as [`ClientConfig::reconnect`] says. Returns `Ok` when the connection ended and no
    /// reconnection is configured, or when `stop` completed (the connection is then closed
    /// with [`CloseReason::Shutdown`]); `Err` with the last attempt's error when no attempt is
    /// left.
    pub async fn run_until<C, K, F, X>(
        &mut self,
        stack: &C,
        clock: &K,
        stop: X,
        on_event: F,
    ) -> Result<(), Error<C::Error>>
    where
        C: TcpConnect,
        K: Clock,
        F: FnMut(Event<'_, C::Error>),
        X: Future,
    {
        let shared = Shared::new(clock, on_event, Stats::new(1));
        let config = self.config;
        let mut connecting = pin!(connect_and_echo(&shared, &config, stack, self.buffer));
        let result = match select(connecting.as_mut(), stop).await {
            Either::First(result) => result,
            Either::Second(_) => {
                // The client sees the stop at its next wait and closes its connection.
                shared.stop();
                connecting.await
            }
        };
        self.stats = shared.stats();
        result
    }
}

async fn connect_and_echo<C, K, F>(
    shared: &Shared<'_, K, F>,
    config: &ClientConfig<'_>,
    stack: &C,
    buffer: &mut [u8],
) -> Result<(), Error<C::Error>>
where
    C: TcpConnect,
    K: Clock,
    F: FnMut(Event<'_, C::Error>),
{
    let remote = config.remote;
    loop {
        let attempt = shared.update_failures(|f| f.attempt());
        shared.emit(Event::Connecting { remote, attempt });
        let deadline = config
            .connect_timeout
            .map(|after| shared.clock.now() + after);
        let connected = match shared.wait(stack.connect(remote), deadline, true).await {
            Waited::Done(Ok(connection)) => Ok(connection),
            Waited::Done(Err(error)) => Err(Error::Connect { remote, error }),
            Waited::Deadline => Err(Error::ConnectTimeout {
                remote,
                // A deadline exists only with a connect timeout.
                after: config.connect_timeout.unwrap_or_default(),
            }),
            Waited::Stopped => return Ok(()),
        };
        let mut connection = match connected {
            Ok(connection) => connection,
            Err(error) => {
                let retry_in = shared.update_failures(|f| f.reconnect(config.reconnect));
                shared.emit(Event::ConnectFailed {
                    error: &error,
                    retry_in,
                });
                match retry_in {
                    Some(retry_in) if shared.sleep(retry_in).await => continue,
                    Some(_) => return Ok(()),
                    None => return Err(error),
                }
            }
        };
        let (conn, open) = shared.opened();
        info!("connected to {}", Address(remote));
        shared.emit(Event::Opened {
            conn,
            peer: remote,
            open,
        });
        let reason = shared
            .echo(
                &mut connection,
                conn,
                config.greeting,
                buffer,
                config.idle_timeout,
            )
            .await;
        debug!("connection {} ended: {}", conn.0, reason.as_str());
        // embedded-nal-async closes on drop: what was written goes first, within LINGER.
        let deadline = Some(shared.clock.now() + LINGER);
        if !matches!(
            shared.wait(connection.flush(), deadline, false).await,
            Waited::Done(Ok(()))
        ) {
            debug!("connection {}: the last flush did not finish", conn.0);
        }
        drop(connection);
        let stopped = matches!(reason, CloseReason::Shutdown);
        let open = shared.closed();
        shared.emit(Event::Closed { conn, reason, open });
        if stopped {
            return Ok(());
        }
        match after_disconnect(config.reconnect) {
            Some(wait) if shared.sleep(wait).await => {}
            _ => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::asynch::testing::{describe, drive, stop, End, MockError, MockNet, Peer};
    use crate::client::{Reconnect, DEFAULT_GREETING};
    use crate::time::{Duration, Instant};
    use crate::Backoff;
    use core::cell::{Cell, RefCell};
    use core::net::SocketAddr;
    use embedded_io_async::ErrorKind;
    use proptest::prelude::*;
    use std::string::String;
    use std::vec::Vec;
    use std::{format, vec};

    fn remote() -> SocketAddr {
        "10.0.0.9:5001".parse().unwrap()
    }

    type Outcome = Option<(Result<(), Error<MockError>>, Stats)>;

    /// Runs a client on `net` until it returns or `stop_when`; the events as text and what
    /// `run_until` returned.
    fn connect(
        net: &MockNet,
        config: ClientConfig<'_>,
        buffer_size: usize,
        stop_when: impl Fn(&MockNet) -> bool,
    ) -> (Vec<String>, Outcome) {
        let events = RefCell::new(Vec::new());
        let flag = Cell::new(false);
        let mut buffer = vec![0u8; buffer_size];
        let mut client = AsyncEchoClient::new(config, &mut buffer);
        let outcome = drive(
            net,
            &flag,
            async {
                let result = client
                    .run_until(net, net, stop(&flag), |event| {
                        events.borrow_mut().extend(describe(&event))
                    })
                    .await;
                (result, client.stats())
            },
            stop_when,
            1_000_000,
        );
        (events.into_inner(), outcome)
    }

    fn with_greeting(bytes: &[u8]) -> Vec<u8> {
        [DEFAULT_GREETING.as_bytes(), bytes].concat()
    }

    #[test]
    fn greets_then_echoes_until_the_server_closes() {
        let net = MockNet::new();
        let sends = b"hello from the server \xe4\xbd\xa0\xe5".repeat(50);
        net.reachable(Some(Ok(Peer::new(5001, &sends)
            .chunks(&[13])
            .writes(&[0, 7]))));
        let (events, outcome) = connect(&net, ClientConfig::new(remote()), 64, |_| false);
        let (result, stats) = outcome.expect("returns when the server closes");
        assert_eq!(result, Ok(()));
        assert_eq!(net.conn(0).received, with_greeting(&sends));
        assert!(net.conn(0).dropped);
        assert_eq!(
            events,
            [
                "connecting 10.0.0.9:5001 #1",
                "opened #0 10.0.0.9:5001 1",
                "closed #0 eof 0"
            ]
        );
        assert_eq!(stats.bytes_received, sends.len() as u64);
        assert_eq!(
            stats.bytes_sent,
            (sends.len() + DEFAULT_GREETING.len()) as u64
        );
    }

    #[test]
    fn a_connect_timeout_without_reconnection_is_final() {
        let net = MockNet::new();
        net.reachable(None);
        let config = ClientConfig::new(remote()).with_connect_timeout(Some(Duration::from_secs(3)));
        let (events, outcome) = connect(&net, config, 8, |_| false);
        let (result, _) = outcome.expect("returns the error");
        assert_eq!(
            result,
            Err(Error::ConnectTimeout {
                remote: remote(),
                after: Duration::from_secs(3)
            })
        );
        assert_eq!(net.now(), Instant::from_millis(3000));
        assert_eq!(
            events[1],
            "connect failed: connecting to 10.0.0.9:5001 timed out after 3000 ms; retry in None"
        );
    }

    #[test]
    fn reconnects_with_backoff_until_its_retries_run_out() {
        let net = MockNet::new();
        for _ in 0..3 {
            net.reachable(Some(Err(MockError(ErrorKind::ConnectionRefused))));
        }
        let reconnect = Reconnect::new()
            .with_max_retries(Some(2))
            .with_backoff(Backoff::new(
                Duration::from_secs(1),
                Duration::from_secs(10),
            ));
        let config = ClientConfig::new(remote()).with_reconnect(Some(reconnect));
        let (events, outcome) = connect(&net, config, 8, |_| false);
        let (result, _) = outcome.expect("gives up");
        assert!(matches!(result, Err(Error::Connect { .. })));
        let refused =
            "connect failed: cannot connect to 10.0.0.9:5001: MockError(ConnectionRefused);";
        assert_eq!(
            events,
            [
                String::from("connecting 10.0.0.9:5001 #1"),
                format!("{refused} retry in Some(1s)"),
                String::from("connecting 10.0.0.9:5001 #2"),
                format!("{refused} retry in Some(2s)"),
                String::from("connecting 10.0.0.9:5001 #3"),
                format!("{refused} retry in None"),
            ]
        );
        assert_eq!(net.now(), Instant::from_millis(3000));
    }

    #[test]
    fn reconnects_after_the_server_goes_away_and_greets_again() {
        let net = MockNet::new();
        net.reachable(Some(Ok(Peer::new(5001, b"first").end(End::Reset))));
        net.reachable(Some(Err(MockError(ErrorKind::ConnectionRefused))));
        net.reachable(Some(Ok(Peer::new(5001, b"second"))));
        let reconnect = Reconnect::new().with_max_retries(Some(0));
        let config = ClientConfig::new(remote()).with_reconnect(Some(reconnect));
        let (events, outcome) = connect(&net, config, 8, |_| false);
        let (result, stats) = outcome.expect("the last attempt's error is final");
        assert!(matches!(result, Err(Error::Connect { .. })), "{events:?}");
        assert_eq!(net.conn(0).received, with_greeting(b"first"));
        assert_eq!(stats.connections, 1);
        assert!(events.contains(&String::from("closed #0 pipe closed 0")));
        // max_retries 0: the refused attempt right after the reset is the last.
        assert_eq!(
            events
                .iter()
                .filter(|e| e.starts_with("connecting"))
                .count(),
            2
        );

        let net = MockNet::new();
        net.reachable(Some(Ok(Peer::new(5001, b"first").end(End::Reset))));
        net.reachable(Some(Ok(Peer::new(5001, b"second"))));
        let config = ClientConfig::new(remote()).with_reconnect(Some(Reconnect::new()));
        let (events, _) = connect(&net, config, 8, |net| {
            net.conns.borrow().len() == 2 && net.open() == 0
        });
        assert_eq!(net.conn(1).received, with_greeting(b"second"), "{events:?}");
        assert!(events.contains(&String::from("opened #1 10.0.0.9:5001 1")));
    }

    #[test]
    fn an_idle_timeout_ends_a_silent_connection() {
        let net = MockNet::new();
        net.reachable(Some(Ok(Peer::new(5001, b"").end(End::Open))));
        let config = ClientConfig::new(remote()).with_idle_timeout(Some(Duration::from_secs(7)));
        let (events, outcome) = connect(&net, config, 8, |_| false);
        assert_eq!(outcome.map(|o| o.0), Some(Ok(())));
        assert_eq!(events[2], "closed #0 idle timeout 0");
        assert_eq!(net.now(), Instant::from_millis(7000));
        assert!(net.conn(0).dropped);
    }

    #[test]
    fn a_stop_ends_the_connection_and_returns() {
        let net = MockNet::new();
        net.reachable(Some(Ok(Peer::new(5001, b"data").end(End::Open))));
        let (events, outcome) = connect(&net, ClientConfig::new(remote()), 8, |net| {
            net.conns
                .borrow()
                .first()
                .is_some_and(|c| c.received.len() > DEFAULT_GREETING.len())
        });
        assert_eq!(outcome.map(|o| o.0), Some(Ok(())));
        assert_eq!(
            events.last().map(String::as_str),
            Some("closed #0 shutdown 0")
        );
        assert!(net.conn(0).dropped);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The greeting, then exactly what the server sent, whatever the chunking and the
        /// partial and pending writes.
        #[test]
        fn the_server_gets_the_greeting_then_exactly_what_it_sent(
            sends in proptest::collection::vec(any::<u8>(), 0..4000),
            chunks in proptest::collection::vec(1usize..900, 1..5),
            writes in proptest::collection::vec(0usize..300, 1..5),
            buffer in 1usize..300,
        ) {
            let net = MockNet::new();
            net.reachable(Some(Ok(Peer::new(5001, &sends).chunks(&chunks).writes(&writes))));
            let (_, outcome) = connect(&net, ClientConfig::new(remote()), buffer, |_| false);
            prop_assert_eq!(outcome.map(|o| o.0), Some(Ok(())));
            prop_assert_eq!(&net.conn(0).received, &with_greeting(&sends));
        }
    }
}
