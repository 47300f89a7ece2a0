// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.20;

/**
 * @title IAnchorRegistry
 * @notice Merkle roots of the batches each VitalProof gateway accepted, numbered per gateway and
 * stream with no gaps, so a missing batch cannot be hidden.
 *
 * A stream is one independent log of a gateway: 0 = signed frames, 1 = consent-disclosure
 * (access) log. Each (gateway, stream) has its own batch sequence, starting at 1, and every
 * anchor must carry exactly the previous sequence plus one.
 *
 * A root is the RFC 9162 §2.1.1 Merkle tree hash of the batch's leaves (leaf = SHA-256(0x00 ‖ leaf
 * bytes), node = SHA-256(0x01 ‖ left ‖ right)); the contract stores it and never recomputes it.
 */
interface IAnchorRegistry {
    /// @notice One anchored batch. `blockNumber` is the block that anchored it.
    struct Anchor {
        bytes32 root;
        uint32 leafCount;
        uint64 firstFrameTimeMs;
        uint64 lastFrameTimeMs;
        uint64 blockNumber;
    }

    /// @notice `gateway` anchored batch `batchSeq` of `stream`.
    event Anchored(
        address indexed gateway,
        uint8 indexed stream,
        uint64 indexed batchSeq,
        bytes32 root,
        uint32 leafCount,
        uint64 firstFrameTimeMs,
        uint64 lastFrameTimeMs
    );

    /// @notice The constructor was given the zero address as admin.
    error AnchorRegistryZeroAdmin();
    /// @notice `got` is not the next sequence `expected`: past it (batches in between would be
    /// missing), or 0, which no batch ever has.
    error AnchorRegistryGapInBatchSeq(uint64 expected, uint64 got);
    /// @notice Batch `batchSeq` of this gateway and stream is already anchored, with root `root`.
    error AnchorRegistryBatchAlreadyAnchored(uint64 batchSeq, bytes32 root);
    /// @notice The root is all zeros.
    error AnchorRegistryZeroRoot();
    /// @notice The batch has no leaves.
    error AnchorRegistryZeroLeafCount();
    /// @notice The first frame time is after the last frame time.
    error AnchorRegistryInvertedTimeRange(uint64 firstFrameTimeMs, uint64 lastFrameTimeMs);
    /// @notice No anchor for this gateway, stream and sequence.
    error AnchorRegistryUnknownAnchor(address gateway, uint8 stream, uint64 batchSeq);

    /**
     * @notice Anchors the next batch of the caller's `stream`. Only GATEWAY_ROLE; the caller is the gateway.
     * @dev Retrying after an unknown outcome is safe: a batch anchored already reverts with
     * AnchorRegistryBatchAlreadyAnchored carrying its root, for the caller to compare.
     * @param stream 0 = frames, 1 = access log; each has its own sequence.
     * @param batchSeq Must equal nextBatchSeq(msg.sender, stream).
     * @param root RFC 9162 Merkle tree hash of the batch; not zero.
     * @param leafCount Number of leaves in the batch; not zero.
     * @param firstFrameTimeMs Earliest device timestamp in the batch, Unix ms.
     * @param lastFrameTimeMs Latest device timestamp in the batch, Unix ms; not before the first.
     * @custom:throws AnchorRegistryGapInBatchSeq, AnchorRegistryBatchAlreadyAnchored, AnchorRegistryZeroRoot,
     * AnchorRegistryZeroLeafCount, AnchorRegistryInvertedTimeRange, AccessControlUnauthorizedAccount.
     */
    function anchor(
        uint8 stream,
        uint64 batchSeq,
        bytes32 root,
        uint32 leafCount,
        uint64 firstFrameTimeMs,
        uint64 lastFrameTimeMs
    ) external;

    /**
     * @notice The anchor of batch `batchSeq` of `gateway`'s `stream`.
     * @param gateway The gateway's address (the account that anchored).
     * @param stream The stream.
     * @param batchSeq The batch sequence, from 1.
     * @return The anchor.
     * @custom:throws AnchorRegistryUnknownAnchor when that batch is not anchored.
     */
    function anchorOf(address gateway, uint8 stream, uint64 batchSeq) external view returns (Anchor memory);

    /**
     * @notice Whether batch `batchSeq` of `gateway`'s `stream` is anchored with exactly `root`.
     * @dev A verdict for verifiers, never a revert.
     * @param gateway The gateway's address.
     * @param stream The stream.
     * @param batchSeq The batch sequence.
     * @param root The Merkle root to compare.
     * @return True when that batch is anchored and its root is `root`.
     */
    function isAnchored(address gateway, uint8 stream, uint64 batchSeq, bytes32 root) external view returns (bool);

    /**
     * @notice The sequence the next anchor of `gateway`'s `stream` must carry: 1 before the first.
     * @param gateway The gateway's address.
     * @param stream The stream.
     * @return The next batch sequence.
     */
    function nextBatchSeq(address gateway, uint8 stream) external view returns (uint64);
}
