//! Line charts in SVG for the bench runners (`vufs-bench plot`, `vufs-group-bench`): one
//! chart is a caption, two axes and labelled lines, drawn the same way everywhere.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

/// An SVG drawing area (the whole file, or a part of it split off).
pub type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// One labelled line of a chart.
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Its points, in chart coordinates.
    pub points: Vec<(f64, f64)>,
    /// Colour.
    pub color: RGBColor,
    /// Stroke width in pixels.
    pub width: u32,
}

impl Line {
    /// A line of width 1.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, color: RGBColor) -> Line {
        Line {
            label: label.into(),
            points,
            color,
            width: 1,
        }
    }

    /// The same line, `width` pixels wide.
    pub fn width(self, width: u32) -> Line {
        Line { width, ..self }
    }
}

/// The axes of a chart: ranges and descriptions.
pub struct Axes {
    /// The x range.
    pub x: Range<f64>,
    /// The y range.
    pub y: Range<f64>,
    /// The x axis' description.
    pub x_desc: &'static str,
    /// The y axis' description.
    pub y_desc: &'static str,
}

/// A white SVG file of `size` pixels at `path`; [`finish`] it after drawing.
pub fn svg(path: &std::path::Path, size: (u32, u32)) -> Result<Area<'_>, String> {
    let root = SVGBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    Ok(root)
}

/// Writes the file out.
pub fn finish(root: &Area<'_>) -> Result<(), String> {
    root.present().map_err(|e| e.to_string())
}

/// Draws one chart with `caption`, `axes` and `lines` (with a legend) into `area`.
pub fn chart(area: &Area<'_>, caption: &str, axes: Axes, lines: Vec<Line>) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut ch = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(axes.x, axes.y)
        .map_err(|e| err(&e))?;
    ch.configure_mesh()
        .x_desc(axes.x_desc)
        .y_desc(axes.y_desc)
        .draw()
        .map_err(|e| err(&e))?;
    for l in lines {
        let c = l.color;
        ch.draw_series(LineSeries::new(l.points, c.stroke_width(l.width)))
            .map_err(|e| err(&e))?
            .label(l.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c));
    }
    ch.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(|e| err(&e))
}
