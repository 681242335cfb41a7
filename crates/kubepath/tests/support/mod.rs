pub mod scale;
