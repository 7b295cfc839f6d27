/** Registers every built-in transport with the transport table (imported once by the CLI). */
