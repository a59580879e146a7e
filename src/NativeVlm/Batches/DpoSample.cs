using NativeVlm.Data;

namespace NativeVlm.Batches;

/// <summary>
/// One preference pair as TRL's DPOTrainer tokenizes it for a vision model (process_row): the prompt
/// rendered with the generation prompt and its images expanded, and each completion's tokens with the
/// eos token appended, already truncated to the limits. Images are null for a text-only prompt.
/// </summary>
public sealed record DpoSample(RowLocation Location, int[] PromptIds, int[] ChosenIds, int[] RejectedIds, SampleImages? Images)
{
    /// <summary>The longer of the two rows the model sees, prompt + chosen and prompt + rejected.</summary>
    public int TokenCount => PromptIds.Length + Math.Max(ChosenIds.Length, RejectedIds.Length);
}
