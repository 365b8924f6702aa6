//! A small fast pseudo-random generator shared by the elements that need
//! one per packet (RandomSwitch, port choice in NAT patterns, IP ids).
