//! What the `echo` roles need of [`Stack`] beyond embedded-nal.

use core::net::SocketAddr;

use smoltcp::phy::Device;

use crate::{Stack, TcpSocket};

/// [`Stack::local_addr`]: for a listener, the interface's IPv4 address and the port.
impl<D, const N: usize> echo::LocalAddress for Stack<'_, D, N>
where
    D: Device,
{
    fn local_address(&self, socket: &TcpSocket) -> Option<SocketAddr> {
        self.local_addr(socket)
    }
}
