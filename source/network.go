package source

// Network is what a Source was configured with for moving bytes: the
// retry policy, the deadlines, the User-Agent and the trace callback. The
// fetch stage reads it so that blobs follow the same rules as the
// documents resolve read.
type Network struct {
	Retry     RetryPolicy
	Deadlines Deadlines
	UserAgent string
	// Trace, when not nil, is told of every request (WithTrace).
	Trace func(Trace)
}

type networked interface{ network() Network }

// NetworkOf returns src's settings, or the defaults for a Source that is
// not a registry's.
func NetworkOf(src Source) Network {
	if n, ok := src.(networked); ok {
		return n.network()
	}
	return Network{Retry: DefaultRetryPolicy(), Deadlines: DefaultDeadlines(), UserAgent: DefaultUserAgent()}
}
