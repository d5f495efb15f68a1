use std::nets::conv_small
network net = conv_small() weights
