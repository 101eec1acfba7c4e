//! Minting tokens for development and scripts (`quicksilver token`): to be written.
