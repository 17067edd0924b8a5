//! The queue against a real `redis-server`: the endpoint's answers and the worker's rules, one at a time.
