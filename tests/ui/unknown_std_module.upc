use std::networks::conv_small
