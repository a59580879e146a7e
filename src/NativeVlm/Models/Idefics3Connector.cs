using NativeVlm.Tensors;

namespace NativeVlm.Models;

/// <summary>
/// Idefics3Connector: pixel shuffle (each scale × scale block of patches becomes one token of
/// scale² × the width) and modality_projection.proj, a bias-free Linear to the text width.
/// </summary>
public sealed class Idefics3Connector : IDisposable
{
    private readonly int _scaleFactor;

    private Idefics3Connector(Tensor projectionWeight, int scaleFactor)
    {
        ProjectionWeight = projectionWeight;
        _scaleFactor = scaleFactor;
    }

    /// <summary>modality_projection.proj.weight [text hidden, vision hidden · scale²].</summary>
    public Tensor ProjectionWeight { get; }

    /// <param name="w">The weights under model.connector.</param>
    public static Idefics3Connector Load(Weights w, Idefics3Config config) => new(
        w.Sub("modality_projection").Sub("proj").Get("weight", config.Text.HiddenSize, config.ConnectorInputSize),
        config.ScaleFactor);

    public IEnumerable<(string Name, Tensor Tensor)> NamedParameters => [("modality_projection.proj.weight", ProjectionWeight)];

    public IEnumerable<Tensor> Parameters => [ProjectionWeight];

    /// <summary>
    /// [frames, patches, vision hidden] → image_hidden_states [frames, patches / scale², text hidden];
    /// traces "connector.image_hidden_states".
    /// </summary>
    public Tensor Forward(Tensor visionHidden, Trace? trace = null)
    {
        Tensor projected = Ops.Linear(Ops.PixelShuffle(visionHidden, _scaleFactor), ProjectionWeight);
        trace?.Invoke("connector.image_hidden_states", projected);
        return projected;
    }

    public void Dispose() => ProjectionWeight.Dispose();
}
