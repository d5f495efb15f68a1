use std::nets::{conv_small, resnet2b}
