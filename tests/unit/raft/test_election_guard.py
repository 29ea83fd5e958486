"""ElectionGuard: check-quorum, vote refusal, PreVote and the lease, on a fake clock."""

from __future__ import annotations

import pytest

from raftlog.raft.guard import ElectionGuard, log_up_to_date

pytestmark = pytest.mark.unit

E = 1.0  # election_timeout_min, seconds
LEASE = 0.5


def guard(size: int = 3, started_at: float = 0.0) -> ElectionGuard:
    return ElectionGuard(election_timeout_min=E, cluster_size=size, started_at=started_at)


def test_log_up_to_date_is_raft_election_restriction() -> None:
    assert log_up_to_date(3, 1, 2, 100)  # a higher last term wins whatever the length
    assert not log_up_to_date(2, 100, 3, 1)
    assert log_up_to_date(2, 5, 2, 5)
    assert not log_up_to_date(2, 4, 2, 5)


def test_lease_needs_a_majority_of_echoed_send_stamps() -> None:
    g = guard(3)
    g.on_became_leader(10.0)
    assert not g.lease_valid(10.0, LEASE)  # elected, but nobody confirmed an append yet
    g.on_echo("b", 10.1)
    assert g.lease_valid(10.2, LEASE)
    # The lease runs from the send stamp, not from when the echo arrived.
    assert g.lease_valid(10.59, LEASE)
    assert not g.lease_valid(10.6, LEASE)


def test_lease_of_five_nodes_uses_the_second_newest_peer_stamp() -> None:
    g = guard(5)
    g.on_became_leader(0.0)
    g.on_echo("b", 1.0)
    assert not g.lease_valid(1.1, LEASE)  # self + b = 2 of 5
    g.on_echo("c", 0.8)
    assert g.confirmed_at(1.1) == 0.8
    assert g.lease_valid(1.2, LEASE)
    assert not g.lease_valid(1.3, LEASE)


def test_echo_from_an_earlier_leadership_vouches_for_nothing() -> None:
    g = guard(3)
    g.on_became_leader(5.0)
    g.on_echo("b", 4.9)  # stamped before this leadership began
    assert g.confirmed_at(5.1) is None
    g.on_echo("b", 5.2)
    g.on_echo("b", 5.1)  # an older stamp arriving late does not move it back
    assert g.confirmed_at(5.3) == 5.2
    g.on_left_leadership()
    assert not g.lease_valid(5.3, LEASE)


def test_a_resumed_paused_leader_finds_its_stamps_old() -> None:
    g = guard(3)
    g.on_became_leader(0.0)
    g.on_echo("b", 1.0)
    # Paused for 3 s; replies to appends sent before the pause are read after it.
    g.on_echo("b", 1.05)
    assert not g.lease_valid(4.0, LEASE)
    assert not g.check_quorum_ok(4.0)


def test_check_quorum_counts_the_election_as_contact() -> None:
    g = guard(3)
    g.on_became_leader(10.0)
    assert g.check_quorum_ok(10.9)
    assert not g.check_quorum_ok(11.0)
    g.on_echo("c", 10.8)
    assert g.check_quorum_ok(11.7)
    assert not g.check_quorum_ok(11.8)
    assert g.quorum_contact_ms(11.8) == 1000


def test_follower_refuses_votes_while_it_hears_from_a_leader() -> None:
    g = guard(3)
    assert not g.may_vote(0.5, leading=False, transfer=False)  # just started
    assert g.may_vote(1.0, leading=False, transfer=False)
    g.on_append_accepted(2.0)
    assert g.heard_from_leader(2.9)
    assert not g.may_vote(2.9, leading=False, transfer=False)
    assert g.may_vote(2.9, leading=False, transfer=True)  # the leader asked for it
    assert not g.heard_from_leader(3.0)
    assert g.may_vote(3.0, leading=False, transfer=False)


def test_leader_refuses_votes_while_a_majority_confirms_it() -> None:
    g = guard(3, started_at=-10.0)
    g.on_became_leader(0.0)
    g.on_echo("b", 0.5)
    assert not g.may_vote(1.4, leading=True, transfer=False)
    assert g.may_vote(1.5, leading=True, transfer=False)


def test_prevote_round_counts_grants_for_its_own_term_once_each() -> None:
    g = guard(5)
    g.start_prevote("a", 8)
    assert not g.on_prevote_granted("b", 8)
    assert not g.on_prevote_granted("b", 8)  # the same peer twice is one grant
    assert not g.on_prevote_granted("c", 7)  # another round's answer
    assert g.on_prevote_granted("d", 8)
    g.on_became_leader(1.0)
    assert g.prevote is None
