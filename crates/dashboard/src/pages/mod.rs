//! The pages, drawn on the server from the CLI's view model. Each page is made of regions the
//! live stream can replace on their own: a page's first load and its updates come from the
//! same drawing functions.

pub mod analysis;
pub mod chart;
pub mod detail;
pub mod list;
pub mod model;

/// How a region replaces what the browser shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The element with this id keeps its tag; its content is replaced.
    Inner,
    /// The element itself (a table row) is replaced.
    Outer,
}

/// A part of a page with its own DOM id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    /// The element's id.
    pub id: String,
    /// How it is replaced.
    pub mode: Mode,
    /// Its HTML.
    pub html: String,
}

impl Region {
    /// Content replaced inside the element `id`.
    pub fn inner(id: &str, html: String) -> Self {
        Self {
            id: id.to_string(),
            mode: Mode::Inner,
            html,
        }
    }

    /// A table row, replaced whole.
    pub fn row(id: String, html: String) -> Self {
        Self {
            id,
            mode: Mode::Outer,
            html,
        }
    }
}

/// A page's regions in document order.
#[derive(Clone, Debug, Default)]
pub struct Regions {
    /// The regions.
    pub items: Vec<Region>,
}

impl Regions {
    /// Adds a region.
    pub fn push(&mut self, region: Region) {
        self.items.push(region);
    }

    /// The region with this id.
    pub fn get(&self, id: &str) -> Option<&Region> {
        self.items.iter().find(|r| r.id == id)
    }
}
