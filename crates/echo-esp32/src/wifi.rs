//! The radio: station credentials, connection attempts bounded in time, the access point.
//!
//! Neither the SSID nor the password is ever logged or shown: errors carry only the reason.

use core::fmt;
use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

use echo::Duration;
use esp_radio::wifi::{
    ap::AccessPointConfig, sta::StationConfig, AuthenticationMethodConfig, Config, ConnectionError,
    DisconnectReason, WifiController, WifiError,
};
use esp_rtos::CurrentThreadHandle;

/// The network a station joins, from build-time env. Deliberately not `Debug`.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct Credentials {
    /// Network name.
    pub ssid: &'static str,
    /// WPA2 passphrase; empty for an open network.
    pub password: &'static str,
}

impl Credentials {
    /// The network `ssid` with `password` (empty: open).
    pub const fn new(ssid: &'static str, password: &'static str) -> Self {
        Credentials { ssid, password }
    }
}

/// The network the board makes in access point mode. Deliberately not `Debug`.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub struct AccessPoint {
    /// Network name.
    pub ssid: &'static str,
    /// WPA2 passphrase (8 to 63 characters); empty for an open network.
    pub password: &'static str,
    /// 2.4 GHz channel, 1 to 13.
    pub channel: u8,
}

impl AccessPoint {
    /// The network `ssid` with `password` (empty: open) on `channel`.
    pub const fn new(ssid: &'static str, password: &'static str, channel: u8) -> Self {
        AccessPoint {
            ssid,
            password,
            channel,
        }
    }
}

/// Why the station is not connected.
#[derive(Clone, Copy, Debug)]
pub enum ConnectFailure {
    /// No answer within the attempt's time.
    Timeout,
    /// The access point or the driver refused, with the 802.11 reason (e.g.
    /// `NoAccessPointFound`, `AuthenticationFailed` for a wrong password).
    Refused(DisconnectReason),
    /// The driver failed.
    Driver(WifiError),
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectFailure::Timeout => f.write_str("timeout"),
            ConnectFailure::Refused(reason) => f.write_str(reason_text(*reason)),
            ConnectFailure::Driver(error) => write!(f, "{error:?}"),
        }
    }
}

/// The reasons a user can act on when joining fails (wrong network name, wrong password, out
/// of range); the others show as `refused`. `DisconnectReason`'s `Debug` would name all 61,
/// in more flash than the budget has room for (README, "Footprint").
fn reason_text(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::NoAccessPointFound => "no AP found",
        DisconnectReason::NoAccessPointFoundWithCompatibleSecurity => "AP security differs",
        DisconnectReason::AuthenticationFailed => "auth failed",
        DisconnectReason::FourWayHandshakeTimeout | DisconnectReason::HandshakeTimeout => {
            "handshake timeout"
        }
        DisconnectReason::AssociationFailed => "association failed",
        DisconnectReason::BeaconTimeout => "beacon timeout",
        _ => "refused",
    }
}

/// Sets the station's network; the radio starts in station mode.
// Inlined so that constant credentials fold: the unused authentication branch and the length
// checks that cannot fail disappear from the firmware.
#[inline(always)]
pub(crate) fn configure_station(
    wifi: &mut WifiController<'static>,
    credentials: &Credentials,
) -> Result<(), WifiError> {
    let authentication = if credentials.password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(credentials.password.try_into()?)
    };
    let station = StationConfig::default()
        .with_ssid(credentials.ssid.try_into()?)
        .with_authentication(authentication);
    wifi.set_config(&Config::Station(station))
}

/// Starts the access point; the radio starts in access point mode.
pub(crate) fn start_access_point(
    wifi: &mut WifiController<'static>,
    ap: &AccessPoint,
) -> Result<(), WifiError> {
    let authentication = if ap.password.is_empty() {
        AuthenticationMethodConfig::Open
    } else {
        AuthenticationMethodConfig::Wpa2Personal(ap.password.try_into()?)
    };
    let config = AccessPointConfig::default()
        .with_ssid(ap.ssid.try_into()?)
        .with_channel(ap.channel)
        .with_authentication(authentication);
    wifi.set_config(&Config::AccessPoint(config))
}

/// How long cancelling an attempt that timed out may take.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(1);

/// Why an attempt the radio answered failed.
fn failure(error: ConnectionError) -> ConnectFailure {
    match error {
        ConnectionError::Failed(info) => ConnectFailure::Refused(info.reason),
        ConnectionError::WifiError(e) => ConnectFailure::Driver(e),
        _ => ConnectFailure::Driver(WifiError::Other),
    }
}

/// One connection attempt, given up after `timeout`.
pub(crate) fn connect(
    wifi: &mut WifiController<'static>,
    timeout: Duration,
) -> Result<(), ConnectFailure> {
    match block_on_for(wifi.connect_async(), timeout) {
        Some(outcome) => outcome.map(drop).map_err(failure),
        None => {
            // Cancel the attempt still under way so the next one starts clean.
            let _ = block_on_for(wifi.disconnect_async(), CANCEL_TIMEOUT);
            Err(ConnectFailure::Timeout)
        }
    }
}

/// One connection attempt, given up after `timeout`: [`connect`] for the async firmware, whose
/// executor runs the other tasks meanwhile.
pub(crate) async fn connect_within(
    wifi: &mut WifiController<'static>,
    timeout: Duration,
) -> Result<(), ConnectFailure> {
    match embassy_time::with_timeout(
        crate::asynch::embassy_duration(timeout),
        wifi.connect_async(),
    )
    .await
    {
        Ok(outcome) => outcome.map(drop).map_err(failure),
        Err(embassy_time::TimeoutError) => {
            let cancel = crate::asynch::embassy_duration(CANCEL_TIMEOUT);
            let _ = embassy_time::with_timeout(cancel, wifi.disconnect_async()).await;
            Err(ConnectFailure::Timeout)
        }
    }
}

/// Runs `future` until it completes or `timeout` passes, sleeping 1 ms between polls so the
/// radio's tasks run. The radio's futures are woken by its events; polling them again after a
/// millisecond costs less than the waker plumbing a blocking firmware would otherwise need.
fn block_on_for<F: Future>(future: F, timeout: Duration) -> Option<F::Output> {
    let deadline = crate::now() + timeout;
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return Some(output);
        }
        if crate::now() >= deadline {
            return None;
        }
        CurrentThreadHandle::get().delay(esp_hal::time::Duration::from_millis(1));
    }
}
