//! [`CountingI2c`]: a bus with no device behind it that counts what is written to it.

use core::cell::Cell;
use core::convert::Infallible;
use core::time::Duration;

use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};

use crate::DATA;

/// An I2C bus with no device behind it that counts what is written to it: transactions, bytes,
/// display data bytes, and the time they take on the wire.
///
/// Every write is acknowledged; reads return zeros. The counters sit in `Cell`s so that a
/// display can own `&CountingI2c` while a test or a benchmark reads them between flushes (see
/// the crate docs).
#[derive(Debug, Default)]
pub struct CountingI2c {
    transactions: Cell<usize>,
    bytes_written: Cell<usize>,
    data_bytes: Cell<usize>,
}

impl CountingI2c {
    /// A bus that has seen nothing.
    pub const fn new() -> Self {
        CountingI2c {
            transactions: Cell::new(0),
            bytes_written: Cell::new(0),
            data_bytes: Cell::new(0),
        }
    }

    /// Transactions since the last reset (each is a start condition and an address byte).
    pub fn transactions(&self) -> usize {
        self.transactions.get()
    }

    /// Bytes written since the last reset, control bytes included, address bytes not.
    pub fn bytes_written(&self) -> usize {
        self.bytes_written.get()
    }

    /// Display data bytes (pixel columns) written since the last reset: the bytes of the
    /// transactions that start with the data control byte, that byte excepted.
    pub fn data_bytes(&self) -> usize {
        self.data_bytes.get()
    }

    /// Bytes on the wire: the written bytes plus one address byte per transaction.
    pub fn wire_bytes(&self) -> usize {
        self.bytes_written() + self.transactions()
    }

    /// How long the bus was busy at `bus_hz`: 9 clocks per byte (8 bits and the acknowledge)
    /// plus about 2 for the start and stop conditions of each transaction.
    pub fn bus_time(&self, bus_hz: u32) -> Duration {
        let clocks = self.wire_bytes() as u64 * 9 + self.transactions() as u64 * 2;
        Duration::from_nanos(clocks * 1_000_000_000 / u64::from(bus_hz))
    }

    /// Sets the counters back to zero.
    pub fn reset(&self) {
        self.transactions.set(0);
        self.bytes_written.set(0);
        self.data_bytes.set(0);
    }

    fn record(&self, operations: &mut [Operation<'_>]) {
        self.transactions.set(self.transactions.get() + 1);
        let mut written = 0;
        let mut data = false;
        for operation in operations {
            match operation {
                Operation::Write(bytes) => {
                    if written == 0 {
                        data = bytes.first() == Some(&DATA);
                    }
                    written += bytes.len();
                }
                Operation::Read(buffer) => buffer.fill(0),
            }
        }
        self.bytes_written.set(self.bytes_written.get() + written);
        if data {
            self.data_bytes.set(self.data_bytes.get() + written - 1);
        }
    }
}

impl ErrorType for CountingI2c {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for CountingI2c {
    fn transaction(
        &mut self,
        _address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.record(operations);
        Ok(())
    }
}

impl ErrorType for &CountingI2c {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for &CountingI2c {
    fn transaction(
        &mut self,
        _address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.record(operations);
        Ok(())
    }
}
