//! Whether the echo role must start over because the board's address changed.
//!
//! [`AddressWatch`] is fed the interface's IPv4 address once per loop. An address that goes
//! away and comes back the same (a short Wi-Fi outage, a renewed lease) keeps the role's
//! connections: TCP survives it. A different address (a new lease, on another network or from
//! a server that forgot the old one) makes every connection dead and the listening address
//! wrong: the role must restart, so that the server listens again and shows the new
//! `IP:PORT`, and the client connects again.

use core::net::Ipv4Addr;

/// What the address did since the last [`AddressWatch::update`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressChange {
    /// Nothing.
    Same,
    /// The interface has no address any more (the role waits).
    Lost,
    /// The interface has an address again, the one the role works on (or its first).
    Back(Ipv4Addr),
    /// The interface has an address other than the one the role works on: restart the role.
    Moved(Ipv4Addr),
}

/// The interface's address, and the one the echo role works on.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddressWatch {
    current: Option<Ipv4Addr>,
    served: Option<Ipv4Addr>,
}

impl AddressWatch {
    /// No address yet.
    pub const fn new() -> Self {
        AddressWatch {
            current: None,
            served: None,
        }
    }

    /// The interface's address now.
    pub fn current(&self) -> Option<Ipv4Addr> {
        self.current
    }

    /// Takes the interface's address now; says what changed.
    pub fn update(&mut self, address: Option<Ipv4Addr>) -> AddressChange {
        if address == self.current {
            return AddressChange::Same;
        }
        self.current = address;
        let Some(address) = address else {
            return AddressChange::Lost;
        };
        match self.served.replace(address) {
            Some(served) if served != address => AddressChange::Moved(address),
            _ => AddressChange::Back(address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 20);
    const SECOND: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 21);

    #[test]
    fn the_first_address_and_the_same_one_again_keep_the_role() {
        let mut watch = AddressWatch::new();
        assert_eq!(watch.update(None), AddressChange::Same);
        assert_eq!(watch.update(Some(FIRST)), AddressChange::Back(FIRST));
        assert_eq!(watch.update(Some(FIRST)), AddressChange::Same);
        assert_eq!(watch.update(None), AddressChange::Lost);
        assert_eq!(watch.update(Some(FIRST)), AddressChange::Back(FIRST));
    }

    #[test]
    fn a_new_address_restarts_the_role_with_or_without_a_gap() {
        let mut watch = AddressWatch::new();
        watch.update(Some(FIRST));
        // A new lease straight away, with no link loss in between.
        assert_eq!(watch.update(Some(SECOND)), AddressChange::Moved(SECOND));
        assert_eq!(watch.update(None), AddressChange::Lost);
        assert_eq!(watch.update(Some(FIRST)), AddressChange::Moved(FIRST));
        assert_eq!(watch.current(), Some(FIRST));
    }
}
