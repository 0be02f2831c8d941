//! A model of the panel's controller that decodes the I2C byte stream as the datasheets
//! describe it (control bytes, commands, display data) into the controller's RAM, written from
//! the datasheets, not from the driver: its own column counts and offsets, and a panic on any
//! byte it does not understand.

use std::cell::RefCell;
use std::convert::Infallible;

use embedded_hal::i2c::{ErrorType, I2c, Operation, SevenBitAddress};

/// Which controller the model plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// SH1106: 132 RAM columns, the panel shows columns 2 to 129.
    Sh1106,
    /// SSD1306: 128 RAM columns, all shown.
    Ssd1306,
}

impl Kind {
    fn ram_columns(self) -> usize {
        match self {
            Kind::Sh1106 => 132,
            Kind::Ssd1306 => 128,
        }
    }

    fn first_visible_column(self) -> usize {
        match self {
            Kind::Sh1106 => 2,
            Kind::Ssd1306 => 0,
        }
    }

    /// Commands followed by one argument byte.
    fn takes_argument(self, command: u8) -> bool {
        match command {
            0x81 | 0xA8 | 0xD3 | 0xD5 | 0xD9 | 0xDA | 0xDB => true,
            0xAD => self == Kind::Sh1106,         // DC-DC control
            0x8D | 0x20 => self == Kind::Ssd1306, // charge pump, addressing mode
            _ => false,
        }
    }
}

#[derive(Debug)]
pub struct State {
    pub kind: Kind,
    pub ram: [[u8; 132]; 8],
    pub page: usize,
    pub column: usize,
    pub display_on: bool,
    pub segment_remap: bool,
    pub com_reversed: bool,
    /// SSD1306 only: 0x02 page addressing (the reset value is 0x02 too, but the driver must
    /// not rely on it after a soft reset).
    pub addressing: Option<u8>,
    /// SH1106: DC-DC on; SSD1306: charge pump on.
    pub power_on: bool,
    /// Display data bytes written into each page.
    pub data_per_page: [usize; 8],
    /// Display data bytes written into each RAM column.
    pub data_per_column: [usize; 132],
    pub transactions: usize,
}

/// The panel at the other end of the bus.
pub struct Model(pub RefCell<State>);

impl Model {
    pub fn new(kind: Kind) -> Self {
        Model(RefCell::new(State {
            kind,
            // Anything can be in the RAM after power-on.
            ram: [[0xA5; 132]; 8],
            page: 0,
            column: 0,
            display_on: false,
            segment_remap: false,
            com_reversed: false,
            addressing: None,
            power_on: false,
            data_per_page: [0; 8],
            data_per_column: [0; 132],
            transactions: 0,
        }))
    }

    pub fn state(&self) -> std::cell::Ref<'_, State> {
        self.0.borrow()
    }

    /// Forgets the counters (not the RAM).
    pub fn reset_counters(&self) {
        let mut state = self.0.borrow_mut();
        state.data_per_page = [0; 8];
        state.data_per_column = [0; 132];
        state.transactions = 0;
    }

    /// Whether the pixel the viewer sees at `x`, `y` is lit. Panics if the panel is off or
    /// would show the picture mirrored or upside down.
    pub fn visible(&self, x: usize, y: usize) -> bool {
        let state = self.0.borrow();
        assert!(state.display_on, "the display is off");
        assert!(state.power_on, "the panel's supply is off");
        assert!(
            state.segment_remap && state.com_reversed,
            "the picture would be mirrored or upside down"
        );
        let column = x + state.kind.first_visible_column();
        state.ram[y / 8][column] & (1 << (y % 8)) != 0
    }

    fn take(&self, bytes: &[u8]) {
        let mut state = self.0.borrow_mut();
        state.transactions += 1;
        let mut bytes = bytes.iter().copied();
        while let Some(control) = bytes.next() {
            let continuation = control & 0x80 != 0;
            let data = control & 0x40 != 0;
            assert_eq!(control & 0x3F, 0, "control byte {control:#04x}");
            if continuation {
                let byte = bytes.next().expect("a byte after a Co=1 control byte");
                if data {
                    state.data(byte);
                } else {
                    state.command(byte, &mut std::iter::empty());
                }
                continue;
            }
            // Co = 0: the rest of the transaction is all data or all commands.
            if data {
                bytes.by_ref().for_each(|byte| state.data(byte));
            } else {
                while let Some(command) = bytes.next() {
                    state.command(command, &mut bytes);
                }
            }
        }
    }
}

impl State {
    fn data(&mut self, byte: u8) {
        assert!(
            self.column < self.kind.ram_columns(),
            "data past the last RAM column ({} of {:?})",
            self.column,
            self.kind
        );
        self.ram[self.page][self.column] = byte;
        self.data_per_page[self.page] += 1;
        self.data_per_column[self.column] += 1;
        self.column += 1;
    }

    fn command(&mut self, command: u8, rest: &mut dyn Iterator<Item = u8>) {
        let argument = if self.kind.takes_argument(command) {
            Some(rest.next().expect("the command's argument"))
        } else {
            None
        };
        match (command, argument) {
            (0x00..=0x0F, None) => self.column = (self.column & 0xF0) | usize::from(command),
            (0x10..=0x1F, None) => {
                self.column = (self.column & 0x0F) | usize::from(command & 0x0F) << 4
            }
            (0x40..=0x7F, None) => {}
            (0xA0 | 0xA1, None) => self.segment_remap = command == 0xA1,
            (0xA4 | 0xA6 | 0x2E | 0xE3, None) => {}
            (0xAE | 0xAF, None) => self.display_on = command == 0xAF,
            (0xB0..=0xB7, None) => self.page = usize::from(command & 0x07),
            (0xC0 | 0xC8, None) => self.com_reversed = command == 0xC8,
            (0xAD, Some(argument)) => self.power_on = argument & 0x01 != 0,
            (0x8D, Some(argument)) => self.power_on = argument & 0x04 != 0,
            (0x20, Some(argument)) => self.addressing = Some(argument),
            (0x81 | 0xA8 | 0xD3 | 0xD5 | 0xD9 | 0xDA | 0xDB, Some(_)) => {}
            _ => panic!("{:?} does not know command {command:#04x}", self.kind),
        }
    }
}

impl ErrorType for &Model {
    type Error = Infallible;
}

impl I2c<SevenBitAddress> for &Model {
    fn transaction(
        &mut self,
        address: SevenBitAddress,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Infallible> {
        assert_eq!(address, 0x3C, "the panel answers at 0x3C");
        let mut bytes = Vec::new();
        for operation in operations {
            match operation {
                Operation::Write(written) => bytes.extend_from_slice(written),
                Operation::Read(_) => panic!("the driver never reads"),
            }
        }
        self.take(&bytes);
        Ok(())
    }
}
