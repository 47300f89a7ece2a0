// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IAnchorRegistry} from "./interfaces/IAnchorRegistry.sol";

/**
 * @title AnchorRegistry
 * @notice Gap-free, per-gateway and per-stream log of Merkle roots.
 * @dev Roles: DEFAULT_ADMIN_ROLE (given to `admin` at deployment) grants and revokes
 * GATEWAY_ROLE; each account with GATEWAY_ROLE anchors its own sequences. Revoking a gateway
 * stops its future anchors and keeps every past one.
 */
contract AnchorRegistry is AccessControl, IAnchorRegistry {
    /// @notice May anchor batches under its own address.
    bytes32 public constant GATEWAY_ROLE = keccak256("GATEWAY_ROLE");
    /// @notice Stream of Merkle batches of signed frames.
    uint8 public constant STREAM_FRAMES = 0;
    /// @notice Stream of Merkle batches of the consent-disclosure (access) log.
    uint8 public constant STREAM_ACCESS_LOG = 1;

    mapping(address gateway => mapping(uint8 stream => uint64 lastBatchSeq)) private _lastBatchSeq;
    mapping(address gateway => mapping(uint8 stream => mapping(uint64 batchSeq => Anchor))) private _anchors;

    /// @param admin Receives DEFAULT_ADMIN_ROLE, which grants GATEWAY_ROLE.
    constructor(address admin) {
        if (admin == address(0)) revert AnchorRegistryZeroAdmin();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IAnchorRegistry
    function anchor(
        uint8 stream,
        uint64 batchSeq,
        bytes32 root,
        uint32 leafCount,
        uint64 firstFrameTimeMs,
        uint64 lastFrameTimeMs
    ) external onlyRole(GATEWAY_ROLE) {
        uint64 expected = _lastBatchSeq[msg.sender][stream] + 1;
        if (batchSeq != expected) {
            // Sequences start at 1: 0 was never anchored, so it is no retry.
            if (batchSeq != 0 && batchSeq < expected) {
                revert AnchorRegistryBatchAlreadyAnchored(batchSeq, _anchors[msg.sender][stream][batchSeq].root);
            }
            revert AnchorRegistryGapInBatchSeq(expected, batchSeq);
        }
        if (root == bytes32(0)) revert AnchorRegistryZeroRoot();
        if (leafCount == 0) revert AnchorRegistryZeroLeafCount();
        if (firstFrameTimeMs > lastFrameTimeMs) {
            revert AnchorRegistryInvertedTimeRange(firstFrameTimeMs, lastFrameTimeMs);
        }

        _lastBatchSeq[msg.sender][stream] = batchSeq;
        _anchors[msg.sender][stream][batchSeq] = Anchor({
            root: root,
            leafCount: leafCount,
            firstFrameTimeMs: firstFrameTimeMs,
            lastFrameTimeMs: lastFrameTimeMs,
            blockNumber: uint64(block.number)
        });
        emit Anchored(msg.sender, stream, batchSeq, root, leafCount, firstFrameTimeMs, lastFrameTimeMs);
    }

    /// @inheritdoc IAnchorRegistry
    function anchorOf(address gateway, uint8 stream, uint64 batchSeq) external view returns (Anchor memory) {
        Anchor memory a = _anchors[gateway][stream][batchSeq];
        if (a.root == bytes32(0)) revert AnchorRegistryUnknownAnchor(gateway, stream, batchSeq);
        return a;
    }

    /// @inheritdoc IAnchorRegistry
    function isAnchored(address gateway, uint8 stream, uint64 batchSeq, bytes32 root) external view returns (bool) {
        return root != bytes32(0) && _anchors[gateway][stream][batchSeq].root == root;
    }

    /// @inheritdoc IAnchorRegistry
    function nextBatchSeq(address gateway, uint8 stream) external view returns (uint64) {
        return _lastBatchSeq[gateway][stream] + 1;
    }
}
