//! SKELETON (issue 2): the command line.
