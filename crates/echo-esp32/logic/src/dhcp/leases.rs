//! The lease table: one slot per address of the pool, each free, offered, leased or declined.
//!
//! A client (named by its MAC address) holds at most one slot. An offer or a lease that ran
//! out keeps its client's name until the address goes to someone else, so that a client coming
//! back gets its previous address (RFC 2131, 4.3.1); new clients get never-used addresses first.

use core::net::Ipv4Addr;

/// A client's MAC address.
pub type Client = [u8; 6];

/// A MAC address as text for the logs: `02:00:00:00:00:01`.
#[derive(Clone, Copy)]
pub struct Mac(pub Client);

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Mac {
    fn format(&self, f: defmt::Formatter<'_>) {
        let [a, b, c, d, e, g] = self.0;
        defmt::write!(
            f,
            "{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}:{=u8:02x}",
            a,
            b,
            c,
            d,
            e,
            g
        )
    }
}

/// What an address of the pool is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Never given out, or given back.
    Free,
    /// Reserved for `client` until `until` (seconds), so that two clients that ask at once are
    /// not offered the same address.
    Offered {
        /// The client's MAC address.
        client: Client,
        /// The end of the reservation, in the server's seconds.
        until: u64,
    },
    /// Acknowledged to `client` until `until`.
    Leased {
        /// The client's MAC address.
        client: Client,
        /// The end of the lease, in the server's seconds.
        until: u64,
    },
    /// A client found the address in use (RFC 2131, 4.3.3): kept back until `until`.
    Declined {
        /// The end of the hold, in the server's seconds.
        until: u64,
    },
}

impl LeaseState {
    fn client(&self) -> Option<Client> {
        match *self {
            LeaseState::Offered { client, .. } | LeaseState::Leased { client, .. } => Some(client),
            LeaseState::Free | LeaseState::Declined { .. } => None,
        }
    }

    /// When the slot can go to another client: `Some(0)` if free, `Some(t)` if it ran out at
    /// `t`, `None` while it is taken.
    fn free_since(&self, now: u64) -> Option<u64> {
        match *self {
            LeaseState::Free => Some(0),
            LeaseState::Offered { until, .. }
            | LeaseState::Leased { until, .. }
            | LeaseState::Declined { until } => (until <= now).then_some(until),
        }
    }
}

/// The slots of a pool of at most `N` consecutive addresses.
pub struct Leases<const N: usize> {
    first: u32,
    len: usize,
    slots: [LeaseState; N],
}

impl<const N: usize> Leases<N> {
    /// A table for the `len` addresses from `first` (`len` at most `N`).
    pub fn new(first: Ipv4Addr, len: usize) -> Self {
        assert!(len <= N, "DHCP pool larger than the lease table");
        Leases {
            first: u32::from(first),
            len,
            slots: [LeaseState::Free; N],
        }
    }

    fn index(&self, address: Ipv4Addr) -> Option<usize> {
        let offset = u32::from(address).checked_sub(self.first)? as usize;
        (offset < self.len).then_some(offset)
    }

    fn address(&self, index: usize) -> Ipv4Addr {
        Ipv4Addr::from(self.first + index as u32)
    }

    /// Every address of the pool and what it is doing.
    pub fn slots(&self) -> impl Iterator<Item = (Ipv4Addr, &LeaseState)> + '_ {
        self.slots[..self.len]
            .iter()
            .enumerate()
            .map(|(index, slot)| (self.address(index), slot))
    }

    /// The address offered or leased to `client`, current or run out but not yet reused.
    pub fn binding(&self, client: Client) -> Option<Ipv4Addr> {
        self.slots()
            .find(|(_, slot)| slot.client() == Some(client))
            .map(|(address, _)| address)
    }

    /// Whether `address` is in the pool and may go to `client` now.
    pub fn available(&self, address: Ipv4Addr, client: Client, now: u64) -> bool {
        self.index(address).is_some_and(|index| {
            let slot = &self.slots[index];
            slot.client() == Some(client) || slot.free_since(now).is_some()
        })
    }

    /// An address for a new client: a never-used one first, else the one that ran out the
    /// longest ago; `None` when all are taken.
    pub fn unused(&self, now: u64) -> Option<Ipv4Addr> {
        self.slots()
            .filter_map(|(address, slot)| Some((slot.free_since(now)?, address)))
            .min_by_key(|(since, _)| *since)
            .map(|(_, address)| address)
    }

    /// Reserves `address` for `client` until `until`; a lease it holds there stays.
    pub fn offer(&mut self, address: Ipv4Addr, client: Client, until: u64) {
        if let Some(index) = self.index(address) {
            if let LeaseState::Leased { until: leased, .. } = self.slots[index] {
                if self.slots[index].client() == Some(client) && leased >= until {
                    return;
                }
            }
            self.take(index, LeaseState::Offered { client, until });
        }
    }

    /// Leases `address` to `client` until `until`.
    pub fn lease(&mut self, address: Ipv4Addr, client: Client, until: u64) {
        if let Some(index) = self.index(address) {
            self.take(index, LeaseState::Leased { client, until });
        }
    }

    /// Puts `slot` at `index`, freeing any other slot of the same client.
    fn take(&mut self, index: usize, slot: LeaseState) {
        for other in &mut self.slots[..self.len] {
            if other.client().is_some() && other.client() == slot.client() {
                *other = LeaseState::Free;
            }
        }
        self.slots[index] = slot;
    }

    /// `client` gives `address` back; its lease ends now. Whether it held it.
    pub fn release(&mut self, address: Ipv4Addr, client: Client, now: u64) -> bool {
        match self.held_by(address, client) {
            Some(index) => {
                self.slots[index] = LeaseState::Leased { client, until: now };
                true
            }
            None => false,
        }
    }

    /// `client` found `address` in use: nobody gets it before `until`. Only the client the
    /// address was offered or leased to can decline it. Whether it did.
    pub fn decline(&mut self, address: Ipv4Addr, client: Client, until: u64) -> bool {
        match self.held_by(address, client) {
            Some(index) => {
                self.slots[index] = LeaseState::Declined { until };
                true
            }
            None => false,
        }
    }

    fn held_by(&self, address: Ipv4Addr, client: Client) -> Option<usize> {
        self.index(address)
            .filter(|&index| self.slots[index].client() == Some(client))
    }

    /// Addresses leased and not run out at `now`.
    pub fn leased(&self, now: u64) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.slots()
            .filter(
                move |(_, slot)| matches!(slot, LeaseState::Leased { until, .. } if *until > now),
            )
            .map(|(address, _)| address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 2);
    const SECOND: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 3);
    const THIRD: Ipv4Addr = Ipv4Addr::new(192, 168, 4, 4);
    const PHONE: Client = [2, 0, 0, 0, 0, 1];
    const LAPTOP: Client = [2, 0, 0, 0, 0, 2];

    fn table() -> Leases<4> {
        Leases::new(FIRST, 3)
    }

    #[test]
    fn addresses_outside_the_pool_are_never_available() {
        let leases = table();
        for outside in [
            Ipv4Addr::new(192, 168, 4, 1),
            Ipv4Addr::new(192, 168, 4, 5),
            Ipv4Addr::new(10, 0, 0, 2),
        ] {
            assert!(!leases.available(outside, PHONE, 0), "{outside}");
        }
    }

    #[test]
    fn an_offer_reserves_the_address_until_it_runs_out() {
        let mut leases = table();
        leases.offer(FIRST, PHONE, 60);
        assert!(!leases.available(FIRST, LAPTOP, 59));
        assert!(leases.available(FIRST, PHONE, 59));
        assert_eq!(leases.unused(59), Some(SECOND));
        assert!(leases.available(FIRST, LAPTOP, 60));
        assert_eq!(leases.leased(0).count(), 0, "an offer is not a lease");
    }

    #[test]
    fn an_offer_does_not_shorten_the_clients_lease() {
        let mut leases = table();
        leases.lease(FIRST, PHONE, 7200);
        leases.offer(FIRST, PHONE, 60);
        assert!(leases.leased(100).eq([FIRST]));
    }

    #[test]
    fn a_client_holds_one_address() {
        let mut leases = table();
        leases.offer(FIRST, PHONE, 60);
        leases.lease(SECOND, PHONE, 100);
        assert_eq!(leases.binding(PHONE), Some(SECOND));
        assert_eq!(leases.unused(0), Some(FIRST));
    }

    #[test]
    fn new_clients_get_never_used_addresses_before_run_out_ones() {
        let mut leases = table();
        leases.lease(FIRST, PHONE, 10);
        leases.lease(SECOND, LAPTOP, 20);
        assert_eq!(leases.unused(30), Some(THIRD));
        leases.lease(THIRD, [2, 0, 0, 0, 0, 3], 100);
        assert_eq!(
            leases.unused(30),
            Some(FIRST),
            "the one run out longest ago"
        );
        assert_eq!(leases.unused(5), None, "all taken");
    }

    #[test]
    fn a_run_out_lease_still_names_its_client() {
        let mut leases = table();
        leases.lease(SECOND, PHONE, 10);
        assert_eq!(leases.binding(PHONE), Some(SECOND));
        leases.lease(SECOND, LAPTOP, 100);
        assert_eq!(leases.binding(PHONE), None, "reused");
    }

    #[test]
    fn release_ends_the_lease_now_but_remembers_the_client() {
        let mut leases = table();
        leases.lease(FIRST, PHONE, 7200);
        assert!(!leases.release(FIRST, LAPTOP, 5), "not the laptop's");
        assert!(leases.release(FIRST, PHONE, 5));
        assert_eq!(leases.leased(5).count(), 0);
        assert!(leases.available(FIRST, LAPTOP, 5));
        assert_eq!(leases.binding(PHONE), Some(FIRST));
    }

    #[test]
    fn a_declined_address_is_held_back_from_everyone_until_the_hold_ends() {
        let mut leases = table();
        leases.lease(FIRST, PHONE, 7200);
        assert!(!leases.decline(FIRST, LAPTOP, 600), "not the laptop's");
        assert!(leases.decline(FIRST, PHONE, 600));
        assert_eq!(leases.binding(PHONE), None);
        assert!(!leases.available(FIRST, PHONE, 599));
        assert_eq!(leases.unused(599), Some(SECOND));
        assert!(leases.available(FIRST, LAPTOP, 600));
    }

    #[test]
    #[should_panic(expected = "larger than the lease table")]
    fn the_pool_must_fit_the_table() {
        Leases::<2>::new(FIRST, 3);
    }
}
