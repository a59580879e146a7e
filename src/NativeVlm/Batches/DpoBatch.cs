using NativeVlm.Models;

namespace NativeVlm.Batches;

/// <summary>
/// A batch of preference pairs in both of TRL's forms. As DataCollatorForPreference pads them:
/// prompts [batch, promptLength] padded on the left, chosen and rejected completions
/// [batch, completionLength] padded on the right, with attention masks. And as
/// concatenated_forward gives them to the model (<see cref="ModelInputs"/>): 2 × batch rows, prompt i +
/// chosen i for row i and prompt i + rejected i for row batch + i, each flushed left (so every row's
/// first token is at position 0, as an unpadded prompt would be) and padded on the right; labels are the
/// completion tokens and −100 on the prompt (image tokens included) and the padding; the pixels are
/// the batch's twice.
/// </summary>
public sealed record DpoBatch(
    int Batch,
    int PromptLength,
    int[] PromptIds,
    byte[] PromptAttentionMask,
    int ChosenLength,
    int[] ChosenIds,
    byte[] ChosenAttentionMask,
    int RejectedLength,
    int[] RejectedIds,
    byte[] RejectedAttentionMask,
    Idefics3Inputs ModelInputs);
