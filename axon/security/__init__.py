"""Keys, peer channel encryption, TLS material: what peers and clients are trusted by."""
