//! [`DriverDevice`]: a smoltcp [`Device`] over any embassy-net-driver [`Driver`].
//!
//! esp-radio's WiFi interfaces and embassy-net-tuntap's `TunTapDevice` implement
//! embassy-net-driver 0.2, not smoltcp's `Device`. The two token APIs are the same shape;
//! the only gap is the `Context` the driver wants, which gets a waker: a no-op one by
//! default (the stack is polled, not woken), or the caller's own through
//! [`DriverDevice::set_waker`] so a host loop can sleep until a frame arrives.

use core::task::{Context, Waker};

use embassy_net_driver::{Checksum as DriverChecksum, Driver, HardwareAddress, LinkState};
use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;

use crate::Error;

/// A smoltcp [`Device`] over an embassy-net-driver [`Driver`].
pub struct DriverDevice<T> {
    driver: T,
    medium: Medium,
    hardware_address: smoltcp::wire::HardwareAddress,
    waker: Waker,
}

impl<T> DriverDevice<T>
where
    T: Driver,
{
    /// Wraps `driver`, with a no-op waker.
    ///
    /// Fails with [`Error::UnsupportedMedium`] for an IEEE 802.15.4 driver, or an IP-medium
    /// driver without the `medium-ip` feature.
    pub fn new(driver: T) -> Result<Self, Error> {
        let (medium, hardware_address) = match driver.hardware_address() {
            HardwareAddress::Ethernet(mac) => (
                Medium::Ethernet,
                smoltcp::wire::HardwareAddress::Ethernet(EthernetAddress(mac)),
            ),
            #[cfg(feature = "medium-ip")]
            HardwareAddress::Ip => (Medium::Ip, smoltcp::wire::HardwareAddress::Ip),
            _ => return Err(Error::UnsupportedMedium),
        };
        Ok(Self {
            driver,
            medium,
            hardware_address,
            waker: Waker::noop().clone(),
        })
    }

    /// Replaces the waker passed to the driver: it is woken when a frame arrives or
    /// transmit space frees up (if the driver implements waking).
    pub fn set_waker(&mut self, waker: Waker) {
        self.waker = waker;
    }

    /// The driver's hardware address in smoltcp's terms, for `smoltcp::iface::Config::new`.
    pub fn hardware_address(&self) -> smoltcp::wire::HardwareAddress {
        self.hardware_address
    }

    /// Whether the driver reports its link up (WiFi associated, TAP opened).
    pub fn is_link_up(&mut self) -> bool {
        let mut cx = Context::from_waker(&self.waker);
        self.driver.link_state(&mut cx) == LinkState::Up
    }

    /// The wrapped driver.
    pub fn driver(&self) -> &T {
        &self.driver
    }

    /// The wrapped driver, mutably.
    pub fn driver_mut(&mut self) -> &mut T {
        &mut self.driver
    }

    /// Unwraps the driver.
    pub fn into_inner(self) -> T {
        self.driver
    }
}

impl<T> Device for DriverDevice<T>
where
    T: Driver,
{
    type RxToken<'a>
        = RxToken<T::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<T::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let mut cx = Context::from_waker(&self.waker);
        self.driver
            .receive(&mut cx)
            .map(|(rx, tx)| (RxToken(rx), TxToken(tx)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        let mut cx = Context::from_waker(&self.waker);
        self.driver.transmit(&mut cx).map(TxToken)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let theirs = self.driver.capabilities();
        let mut caps = DeviceCapabilities::default();
        caps.medium = self.medium;
        caps.max_transmission_unit = theirs.max_transmission_unit;
        caps.max_burst_size = theirs.max_burst_size;
        caps.checksum = checksums(&theirs.checksum);
        caps
    }
}

fn checksums(theirs: &embassy_net_driver::ChecksumCapabilities) -> ChecksumCapabilities {
    fn one(c: DriverChecksum) -> Checksum {
        match c {
            DriverChecksum::Both => Checksum::Both,
            DriverChecksum::Rx => Checksum::Rx,
            DriverChecksum::Tx => Checksum::Tx,
            DriverChecksum::None => Checksum::None,
        }
    }
    let mut ours = ChecksumCapabilities::default();
    ours.ipv4 = one(theirs.ipv4);
    ours.udp = one(theirs.udp);
    ours.tcp = one(theirs.tcp);
    ours.icmpv4 = one(theirs.icmpv4);
    #[cfg(feature = "ipv6")]
    {
        ours.icmpv6 = one(theirs.icmpv6);
    }
    ours
}

/// Receive token of a [`DriverDevice`]: the driver's token behind smoltcp's trait.
pub struct RxToken<R>(R);

impl<R> phy::RxToken for RxToken<R>
where
    R: embassy_net_driver::RxToken,
{
    fn consume<Ret, F>(self, f: F) -> Ret
    where
        F: FnOnce(&[u8]) -> Ret,
    {
        self.0.consume(|frame| f(frame))
    }
}

/// Transmit token of a [`DriverDevice`]: the driver's token behind smoltcp's trait.
pub struct TxToken<T>(T);

impl<T> phy::TxToken for TxToken<T>
where
    T: embassy_net_driver::TxToken,
{
    fn consume<Ret, F>(self, len: usize, f: F) -> Ret
    where
        F: FnOnce(&mut [u8]) -> Ret,
    {
        self.0.consume(len, f)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use embassy_net_driver::Capabilities;

    /// A driver with one queued frame that records what is transmitted.
    struct OneFrame {
        hardware: HardwareAddress,
        inbound: Option<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    struct Rx(Vec<u8>);
    struct Tx<'a>(&'a mut Vec<Vec<u8>>);

    impl embassy_net_driver::RxToken for Rx {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
            f(&mut self.0)
        }
    }

    impl embassy_net_driver::TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let mut frame = std::vec![0; len];
            let r = f(&mut frame);
            self.0.push(frame);
            r
        }
    }

    impl Driver for OneFrame {
        type RxToken<'a> = Rx;
        type TxToken<'a> = Tx<'a>;
        fn receive(&mut self, _: &mut Context) -> Option<(Rx, Tx<'_>)> {
            let frame = self.inbound.take()?;
            Some((Rx(frame), Tx(&mut self.sent)))
        }
        fn transmit(&mut self, _: &mut Context) -> Option<Tx<'_>> {
            Some(Tx(&mut self.sent))
        }
        fn link_state(&mut self, _: &mut Context) -> LinkState {
            LinkState::Up
        }
        fn capabilities(&self) -> Capabilities {
            let mut caps = Capabilities::default();
            caps.max_transmission_unit = 1514;
            caps.max_burst_size = Some(4);
            caps.checksum.tcp = DriverChecksum::Tx;
            caps
        }
        fn hardware_address(&self) -> HardwareAddress {
            self.hardware
        }
    }

    fn ethernet(inbound: Option<Vec<u8>>) -> OneFrame {
        OneFrame {
            hardware: HardwareAddress::Ethernet([2, 0, 0, 0, 0, 1]),
            inbound,
            sent: Vec::new(),
        }
    }

    #[test]
    fn maps_capabilities_and_address() {
        let device = DriverDevice::new(ethernet(None)).unwrap();
        let caps = device.capabilities();
        assert_eq!(caps.medium, Medium::Ethernet);
        assert_eq!(caps.max_transmission_unit, 1514);
        assert_eq!(caps.max_burst_size, Some(4));
        assert!(matches!(caps.checksum.tcp, Checksum::Tx));
        assert!(matches!(caps.checksum.ipv4, Checksum::Both));
        assert_eq!(
            device.hardware_address(),
            smoltcp::wire::HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, 1]))
        );
    }

    #[test]
    fn passes_frames_both_ways() {
        use smoltcp::phy::{RxToken as _, TxToken as _};
        let mut device = DriverDevice::new(ethernet(Some(std::vec![1, 2, 3]))).unwrap();
        let (rx, tx) = device.receive(Instant::ZERO).unwrap();
        assert_eq!(rx.consume(|frame| frame.to_vec()), [1, 2, 3]);
        tx.consume(2, |frame| frame.copy_from_slice(&[9, 8]));
        assert!(device.receive(Instant::ZERO).is_none());
        device
            .transmit(Instant::ZERO)
            .unwrap()
            .consume(1, |frame| frame[0] = 7);
        assert_eq!(device.driver().sent, [std::vec![9, 8], std::vec![7]]);
        assert!(device.is_link_up());
    }

    #[test]
    fn rejects_ieee802154() {
        let mut driver = ethernet(None);
        driver.hardware = HardwareAddress::Ieee802154([0; 8]);
        assert_eq!(
            DriverDevice::new(driver).err(),
            Some(Error::UnsupportedMedium)
        );
    }
}
